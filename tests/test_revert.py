"""`crdtdoc.revert` (`Replica.revert`): an agent's work since a version undone by ordinary,
attributed edits that keep everyone else's work and merge everywhere."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crdtdoc
from crdtdoc import NotFound, Replica, UsageError, Version
from tests.support.aio import run
from tests.support.builders import sync
from tests.support.hubs import running_hub
from tests.support.sessions import DOC, LETTERS, Session, run_session


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_reverting_the_only_writer_since_a_version_brings_that_version_back(seed: int) -> None:
    """With nobody else writing since `v`, taking out what bob wrote and putting back what he
    deleted is the text at `v`, exactly: every restored stretch lands where it stood."""
    print(f"seed={seed}")
    session = run_session(seed, steps=20)
    session.sync_all()
    v = session.replicas["alice"].version()
    expected = session.replicas["alice"].document(DOC).read()
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 12)):
        session.edit(rng, "bob")
    session.sync_all()
    alice = session.replicas["alice"]
    result = alice.revert("bob", since=v)
    assert result.kept == ()
    assert alice.document(DOC).read() == expected
    session.sync_all()
    assert {r.document(DOC).read() for r in session.replicas.values()} == {expected}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_a_revert_keeps_what_others_wrote_and_converges(seed: int) -> None:
    """Others keep writing concurrently, before and after the revert: nothing another agent
    wrote is taken out (each letter counts at least as before), none of bob's writing since `v`
    survives unless reported kept, and every replica ends with the same text."""
    print(f"seed={seed}")
    session = run_session(seed, steps=15)
    session.sync_all()
    v = session.replicas["carol"].version()
    rng = random.Random(seed)
    more = run_more(session, rng, 20)
    session.edit(rng, "bob")  # (so bob wrote something since `v`)
    more.sync_all()
    carol = session.replicas["carol"]
    before = carol.document(DOC).read()
    result = carol.revert("bob", since=v)
    after = carol.document(DOC).read()
    for letter in (LETTERS["alice"], LETTERS["carol"]):
        assert after.count(letter) >= before.count(letter)
    if not result.kept:  # every "b" left was there at `v`: bob's later writing is gone
        assert after.count(LETTERS["bob"]) <= carol.at(v).document(DOC).read().count("b")
    session.edit(rng, "alice")  # concurrently with the revert
    session.sync_all()
    assert len({r.document(DOC).read() for r in session.replicas.values()}) == 1


def run_more(session: Session, rng: random.Random, steps: int) -> Session:
    agents = list(session.replicas)
    for _ in range(steps):
        agent = rng.choice(agents)
        if rng.random() < 0.3:
            session.sync(agent, rng.choice([a for a in agents if a != agent]))
        else:
            session.edit(rng, agent)
    return session


def test_the_story_a_hallucinated_fix_is_reverted_and_the_team_carries_on() -> None:
    alice, bob, carol = (Replica(n, history=True) for n in ("alice", "bob", "carol"))
    alice.document("design").insert(0, "The API returns JSON.\nRetry up to 3 times.\n")
    backlog = alice.tasks("backlog")
    fix = backlog.add("fix retries")
    migrate = backlog.add("write migration")
    alice.spec("svc").set("getUser", "(id) -> User")
    sync(alice, bob, carol)
    v = bob.version()
    bob.document("design").replace("Retry up to 3 times.", "Errors are retried forever.")
    bob.tasks("backlog").complete(fix)
    bob.spec("svc").set("getUser", "(id) -> Any")
    bob.tasks("backlog").claim(migrate)
    sync(alice, bob, carol)
    carol.document("design").insert(0, "# Design\n")  # concurrent with the revert below
    result = alice.revert("bob", since=v, note="bob's retry fix was hallucinated")
    assert result.kept == () and result.removed > 2 and result.restored > 1
    sync(alice, bob, carol)
    for r in (alice, bob, carol):
        assert (
            r.document("design").read() == "# Design\nThe API returns JSON.\nRetry up to 3 times.\n"
        )
        assert r.tasks("backlog").get(fix).status == "open"
        assert r.tasks("backlog").get(migrate).assignee is None
        assert r.spec("svc").get("getUser") == "(id) -> User"
    noted = [c for c in alice.changes_since(v) if c.kind == "note"]
    assert noted and noted[-1].agent == "alice" and "hallucinated" in noted[-1].describe()
    # The revert is a change like any other: reverting it brings bob's version back.
    back = carol.revert("alice", since=result.before)
    assert back.kept == ()
    assert carol.document("design").read() == (
        "# Design\nThe API returns JSON.\nErrors are retried forever.\n"
    )
    assert carol.spec("svc").get("getUser") == "(id) -> Any"


def test_what_others_built_inside_is_kept_and_reported() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.document("d").insert(0, "Intro.\n")
    sync(alice, bob)
    v = bob.version()
    bob.document("d").append("Bob wrote this paragraph.\n")
    task = bob.tasks("t").add("bob's task")
    sync(alice, bob)
    alice.document("d").replace("wrote this", "wrote (alice: verified) this")
    alice.tasks("t").claim(task)
    result = alice.revert("bob", since=v)
    text = alice.document("d").read()
    assert "(alice: verified)" in text
    assert "Bob wrote" in text  # the stretch around alice's insertion stays
    assert task in alice.tasks("t")
    assert len(result.kept) == 3 and any("t/" in k for k in result.kept)


def test_a_removed_spec_member_and_a_removed_map_value_come_back() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.spec("svc").set("getUser", "(id) -> User")
    alice.map("settings").set("retries", 3)
    sync(alice, bob)
    v = bob.version()
    bob.spec("svc").delete("getUser")
    bob.map("settings").delete("retries")
    sync(alice, bob)
    alice.revert("bob", since=v, on=["svc"])
    assert alice.spec("svc").get("getUser") == "(id) -> User"
    assert "retries" not in alice.map("settings")
    alice.revert("bob", since=v, on=[alice.map("settings")])
    assert alice.map("settings").get("retries") == 3


def test_a_key_someone_else_set_after_the_agent_stays_theirs() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.spec("svc").set("getUser", "v1")
    sync(alice, bob)
    v = bob.version()
    bob.spec("svc").set("getUser", "v2 (bob)")
    sync(alice, bob)
    alice.spec("svc").set("getUser", "v3 (alice)")
    result = alice.revert("bob", since=v)
    assert alice.spec("svc").get("getUser") == "v3 (alice)"
    assert (result.removed, result.restored) == (0, 0)


def test_revert_says_what_it_cannot_do() -> None:
    r = Replica("alice", history=True)
    r.document("d").insert(0, "x")
    with pytest.raises(NotFound, match=r"no agent named 'bob'.*alice"):
        r.revert("bob")
    with pytest.raises(UsageError):
        r.revert("")
    with pytest.raises(UsageError):
        r.revert("alice", since=3)  # type: ignore[arg-type]
    nothing = r.revert("alice", since=r.version())
    assert (nothing.removed, nothing.restored) == (0, 0)


def test_a_revert_through_a_real_hub_converges_and_keeps_concurrent_work(tmp_path: Path) -> None:
    """Three connected agents: carol reverts bob's work in a guarded commit (planned first)
    while alice keeps typing; everyone ends with alice's work, without bob's, and the same."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            agents = [
                crdtdoc.connect(url, agent=n, history=True) for n in ("alice", "bob", "carol")
            ]
            alice, bob, carol = agents
            async with alice, bob, carol:
                alice.document("d").insert(0, "Intro.\n")
                await everyone_has(agents, alice)
                v = bob.version()
                bob.document("d").append("A hallucinated paragraph.\n")
                await everyone_has(agents, bob)
                plan = carol.plan_revert("bob", since=v)
                assert (plan.removed, plan.touched) == (26, ["d"])
                alice.document("d").append("Alice goes on.\n")  # concurrent with the revert
                async with carol.commit(on=plan.touched):
                    plan.apply(carol, "not verified")
                await alice.flush(timeout=10)
                await carol.flush(timeout=10)
                for replica in agents:
                    for other in agents:
                        await replica.wait_for(other.version(), timeout=10)
                texts = {r.document("d").read() for r in agents}
                assert texts == {"Intro.\nAlice goes on.\n"}

    run(body())


async def everyone_has(agents: list[crdtdoc.ConnectedReplica], writer: Replica) -> None:
    await writer.flush(timeout=10)  # type: ignore[attr-defined]
    for replica in agents:
        await replica.wait_for(writer.version(), timeout=10)


def test_inside_a_write_revert_points_to_plan_revert_and_the_past_waits() -> None:
    r = Replica("alice", history=True)
    r.document("d").insert(0, "x")
    v = r.version()
    plan = r.plan_revert("alice", since=Version())
    assert (plan.removed, plan.touched) == (1, ["d"])
    with r.transaction(note="undo"):
        with pytest.raises(UsageError, match="plan_revert"):
            r.revert("alice")
        with pytest.raises(UsageError, match="not inside it"):
            r.at(v)
        plan.apply(r)
    assert r.document("d").read() == ""


def test_a_root_others_use_as_another_type_does_not_stop_a_revert() -> None:
    """Review (issue 21): one writer registered `x` as a document and wrote another type
    there (a Y.Array, an XML fragment); every revert without on= raised WrongKind."""
    from pycrdt import Array, Doc, Map

    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.document("design").insert(0, "Intro.\n")
    bob.apply_update(alice.encode_update())
    v = bob.version()
    bob.document("design").append("bob's line\n")
    mallory: Doc = Doc(client_id=99)  # type: ignore[type-arg]
    mallory.apply_update(bob.encode_update())
    state = mallory.get_state()
    with mallory.transaction():
        mallory.get("x", type=Array).append(1)
        mallory.get("__crdtdoc_artifacts", type=Map)["x"] = "document"
    alice.apply_update(bob.encode_update())
    alice.apply_update(mallory.get_update(state))
    result = alice.revert("bob", since=v)
    assert alice.document("design").read() == "Intro.\n"
    assert any(k.startswith("x: left as it is") for k in result.kept), result.kept

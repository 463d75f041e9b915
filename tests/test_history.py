"""`crdtdoc.history` and `Replica.at` / `Replica.history`: the room as it was at any version it
saw, and its steps in an order every replica agrees on."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crdtdoc import HistoryUnavailable, Replica, UsageError, Version
from tests.support.sessions import DOC, run_session


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_at_shows_every_version_an_agent_saw_as_it_saw_it(seed: int) -> None:
    print(f"seed={seed}")
    session = run_session(seed)
    session.sync_all()
    reader = session.replicas["alice"]
    for version, text in session.seen:
        past = reader.at(version)
        assert past.document(DOC).read() == text
        assert past.version() == version


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_every_step_leads_to_a_version_the_engine_can_show_and_the_last_is_now(seed: int) -> None:
    print(f"seed={seed}")
    session = run_session(seed)
    session.sync_all()
    replica = session.replicas["bob"]
    room = replica.room_history()
    versions = room.versions(set(range(len(room.steps))))
    previous = Version()
    for number in range(len(room.steps)):
        assert previous <= versions[number]
        replica.at(versions[number])  # causally closed: shows, without HistoryUnavailable
        previous = versions[number]
    assert previous == replica.version()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32))
@example(4994)  # an engine that merged a typist's two structs into one made another step
@example(3315448086)
def test_every_replica_lists_the_same_history(seed: int) -> None:
    """The order depends only on the document: replicas that received the same updates in
    different orders list the same steps, versions and authors."""
    print(f"seed={seed}")
    session = run_session(seed)
    session.sync_all()
    rng = random.Random(seed)
    parts = [r.encode_update() for r in session.replicas.values()]
    rng.shuffle(parts)
    late = Replica("late", history=True)
    for part in parts:
        late.apply_update(part)
    listed = [
        [
            (e.version, e.agent, [c.describe() for c in e.changes])
            for e in r.history(DOC, limit=None)
        ]
        for r in (*session.replicas.values(), late)
    ]
    assert all(one == listed[0] for one in listed)


def test_history_names_who_did_what_in_artifact_terms() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    tasks = alice.tasks("backlog")
    tid = tasks.add("write migration")
    alice.document("design").insert(0, "The API returns JSON.\n")
    bob.apply_update(alice.encode_update())
    bob.tasks("backlog").complete(tid)
    bob.document("design").replace("JSON", "XML")
    alice.apply_update(bob.encode_update())

    backlog = [(e.agent, e.changes[0].kind) for e in alice.history("backlog")]
    assert backlog == [("alice", "task-added"), ("bob", "completed")]
    design = alice.history("design")
    # bob's replace deleted and wrote in one commit: one step, never half of it
    assert [e.agent for e in design] == ["alice", "bob"]
    assert [c.describe() for c in design[1].changes] == [
        "bob inserted 'XML' at line 1 of design",
        "bob deleted 'JSON' from design",
    ]
    shown = [alice.at(e.version).document("design").read() for e in design]
    assert shown == ["The API returns JSON.\n", "The API returns XML.\n"]
    assert alice.history("design", limit=1) == design[-1:]
    assert alice.history("design", limit=0) == []


def test_a_past_replica_reads_but_refuses_every_change() -> None:
    r = Replica("alice", history=True)
    r.document("d").insert(0, "one")
    v = r.version()
    r.document("d").insert(3, " two")
    past = r.at(v.token())
    assert past.document("d").read() == "one"
    with pytest.raises(UsageError, match="past version"):
        past.document("d").insert(0, "x")
    with pytest.raises(UsageError, match="past version"):
        past.apply_update(r.encode_update())
    assert r.document("d").read() == "one two"


def test_a_replica_without_history_says_so_instead_of_showing_a_wrong_text() -> None:
    plain = Replica("alice")
    plain.document("d").insert(0, "hello world")
    v = plain.version()
    plain.document("d").delete(0, 6)
    with pytest.raises(HistoryUnavailable, match="no longer holds"):
        plain.at(v)
    assert plain.at(plain.version()).document("d").read() == "world"


def test_history_received_from_a_document_that_collected_it_is_unavailable() -> None:
    """A history replica that joined from a collected document holds no deleted text: asking
    for a version from before those deletions is refused, not a panic of the engine."""
    plain = Replica("alice")
    plain.document("d").insert(0, "hello world")
    v = plain.version()
    plain.document("d").delete(0, 6)
    keeper = Replica("bob", history=True)
    keeper.apply_update(plain.encode_update())
    with pytest.raises(HistoryUnavailable):
        keeper.at(v)


def test_a_version_this_replica_has_not_seen_is_unavailable() -> None:
    a, b = Replica("alice", history=True), Replica("bob", history=True)
    a.document("d").insert(0, "mine")
    with pytest.raises(HistoryUnavailable, match="has not seen"):
        b.at(a.version())
    with pytest.raises(UsageError):
        a.at(42)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        a.history("d", limit=-1)


def test_a_saved_history_replica_loads_with_its_history() -> None:
    import os
    import tempfile

    r = Replica("alice", history=True)
    r.document("d").insert(0, "hello world")
    v = r.version()
    r.document("d").delete(0, 6)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.crdtdoc")
        r.save(path)
        again = Replica.load(path, history=True)
    assert again.at(v).document("d").read() == "hello world"


def test_a_deletion_of_what_was_just_typed_is_a_step_of_its_own() -> None:
    """Typing, then deleting it in the next commit: the deletions-log entry follows the typing
    at the next id, as a replace's does, but a commit does not delete what it writes."""
    r = Replica("ann", history=True)
    doc = r.document("d")
    doc.insert(0, "keep.")
    doc.insert(0, "XY")
    doc.delete(0, 2)
    listed = [e.describe().splitlines()[0] for e in r.history("d", limit=None)]
    assert listed == [
        "ann inserted 'keep.' at line 1 of d",
        "ann inserted 'XY' into d",
        "ann deleted 'XY' from d",
    ]

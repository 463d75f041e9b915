"""`crdtdoc.server.review_gates` against a writer that skips crdtdoc's checks: on a hub with a
secret, a verification or approval forged, self-granted or under another's name, a lowered
requirement, or a freeze that skips its approvals is refused (close 4403) and changes nothing;
the honest path counts a task done and a spec frozen everywhere, the hub included."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pycrdt import Doc, Map

import crdtdoc
from crdtdoc import FrozenError, Replica, ReviewRefused
from crdtdoc.gates import APPROVAL_PREFIX
from tests.server.test_access import FAST, MALLORY, SECRET, attempt, token
from tests.support.aio import run
from tests.support.hubs import running_hub


def forged(room: bytes, edit: Callable[[Replica], None], client_id: int = MALLORY) -> bytes:
    """An update mallory writes straight into the document, past crdtdoc's own checks."""
    mallory = Replica("mallory", client_id=client_id)
    mallory.apply_update(room)
    before = mallory.version()
    with mallory.transaction():
        edit(mallory)
    return mallory.encode_update(since=before)


def part(replica: Replica, task_id: str, key: str) -> Map:  # type: ignore[type-arg]
    task = replica.tasks("backlog")._task_map(task_id)
    return replica.tasks("backlog")._part(task, key, Map)  # type: ignore[no-any-return]


def agent(url: str, name: str) -> crdtdoc.ConnectedReplica:
    """`name` connected to the room at `url` with its own token."""
    return crdtdoc.connect(url, agent=name, token=token(name), backoff=FAST)


async def settle(*replicas: crdtdoc.ConnectedReplica) -> None:
    for r in replicas:
        await r.flush(timeout=10)
    for r in replicas:
        for other in replicas:
            await r.wait_for(other.version(), timeout=10)


def test_a_task_gate_cannot_be_forged_or_skipped(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/room"

            async with (
                agent(url, "alice") as alice,
                agent(url, "bob") as bob,
                agent(url, "mallory") as mal,
            ):
                tid = alice.tasks("backlog").add("fix retries", verify=1)
                await settle(alice, bob, mal)
                mal.tasks("backlog").complete(tid)  # mallory completes, honestly
                await settle(alice, bob, mal)
                room = alice.encode_update()
                alice_key = str(alice.client_id)
                attacks = {
                    "verifies own completion": lambda r: part(r, tid, "verifications").__setitem__(
                        str(MALLORY), {"by": "mallory", "at": time.time()}
                    ),
                    "verifies as alice": lambda r: part(r, tid, "verifications").__setitem__(
                        str(MALLORY), {"by": "alice", "at": time.time()}
                    ),
                    "verifies under alice's key": lambda r: part(
                        r, tid, "verifications"
                    ).__setitem__(alice_key, {"by": "mallory", "at": time.time()}),
                    "lowers the requirement": lambda r: (
                        r.tasks("backlog")._task_map(tid).__setitem__("verify", 0)
                    ),
                    "removes the requirement": lambda r: (
                        r.tasks("backlog")._task_map(tid).__delitem__("verify")
                    ),
                    "completes as bob": lambda r: part(r, tid, "completions").__setitem__(
                        "x1", {"by": "bob", "at": time.time()}
                    ),
                }
                for what, edit in attacks.items():
                    code, reason = await attempt(url, "mallory", forged(room, edit))
                    assert code == 4403, (what, reason)
                # completing and verifying in one update, as a fresh client of mallory's
                both = forged(
                    room,
                    lambda r: (
                        part(r, tid, "completions").__setitem__(
                            "x2", {"by": "mallory", "at": time.time()}
                        ),
                        part(r, tid, "verifications").__setitem__(
                            str(MALLORY + 1), {"by": "mallory", "at": time.time()}
                        ),
                    ),
                    client_id=MALLORY + 1,
                )
                assert (await attempt(url, "mallory", both))[0] == 4403
                await settle(alice, bob)
                assert alice.tasks("backlog").get(tid).status == "verifying"
                with pytest.raises(ReviewRefused, match="another agent must verify"):
                    mal.tasks("backlog").verify(tid)
                bob.tasks("backlog").verify(tid)
                await settle(alice, bob, mal)
                for r in (alice, bob, mal):
                    task = r.tasks("backlog").get(tid)
                    assert (task.status, task.verified_by) == ("done", ["bob"])

    run(body())


def test_a_freeze_waits_for_its_approvals_and_cannot_be_forced(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/room"

            async with (
                agent(url, "alice") as alice,
                agent(url, "bob") as bob,
                agent(url, "mallory") as mal,
            ):
                alice.spec("api").set("getUser", "(id) -> User")
                alice.spec("api").freeze(approvers=["bob"])
                await settle(alice, bob, mal)
                assert not bob.spec("api").frozen
                room = alice.encode_update()
                now = time.time()
                attacks: dict[str, Callable[[Replica], None]] = {
                    "freezes outright": lambda r: (
                        r.spec("api")._root().__setitem__("frozen", {"by": "mallory", "at": now})
                    ),
                    "approves, unnamed": lambda r: (
                        r.spec("api")
                        ._root()
                        .__setitem__(APPROVAL_PREFIX + str(MALLORY), {"by": "mallory", "at": now})
                    ),
                    "approves as bob": lambda r: (
                        r.spec("api")
                        ._root()
                        .__setitem__(APPROVAL_PREFIX + str(MALLORY), {"by": "bob", "at": now})
                    ),
                    "proposes again": lambda r: (
                        r.spec("api")
                        ._root()
                        .__setitem__("freeze", {"by": "mallory", "at": now, "approvers": []})
                    ),
                    "withdraws alice's proposal": lambda r: (
                        r.spec("api")._root().__delitem__("freeze")
                    ),
                }
                for what, edit in attacks.items():
                    code, reason = await attempt(url, "mallory", forged(room, edit))
                    assert code == 4403, (what, reason)
                with pytest.raises(ReviewRefused, match="waits for bob"):
                    mal.spec("api").approve()
                bob.spec("api").approve()
                await settle(alice, bob, mal)
                for r in (alice, bob, mal):
                    assert r.spec("api").frozen and r.spec("api").frozen_by() == "alice"
                with pytest.raises(FrozenError):
                    mal.spec("api").set("getUser", "(id) -> Any")
                late = forged(
                    alice.encode_update(),
                    lambda r: (
                        r.spec("api")
                        ._root()
                        .__setitem__("m:forged", {"member": "getUser", "value": 1, "by": "mallory"})
                    ),
                )
                assert (await attempt(url, "mallory", late))[0] == 4403  # frozen at the hub

    run(body())


def raw(room: bytes, edit: Callable[[Doc], None], client_id: int = MALLORY) -> bytes:  # type: ignore[type-arg]
    """An update written with pycrdt alone (no crdtdoc replica: no deletions-log entry)."""
    doc: Doc = Doc(client_id=client_id)  # type: ignore[type-arg]
    doc.apply_update(room)
    state = doc.get_state()
    edit(doc)
    return doc.get_update(state)


def test_a_gate_is_not_forged_by_replacing_what_it_reads(tmp_path: Path) -> None:
    """Review (issue 21): plain values written where the gate's Y.Maps are, a task replaced
    whole without its requirement, and an overwrite of `verify` that names only its origin,
    each past crdtdoc's checks: all refused, and replicas would not count them anyway."""
    from tests.support.yjs_items import RawWriter, entry_id, nested_type_id

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/room"
            async with agent(url, "alice") as alice:
                tid = alice.tasks("backlog").add("fix", verify=2)
                await alice.flush(timeout=10)
                room = alice.encode_update()

                def plain(d: Doc) -> None:  # type: ignore[type-arg]
                    task = d.get("backlog", type=Map)[tid]
                    task["completions"] = {"x": {"by": "mallory", "at": 1.0}}
                    task["verifications"] = {"1": {"by": "bob", "at": 1.0}}

                def replace(d: Doc) -> None:  # type: ignore[type-arg]
                    d.get("backlog", type=Map)[tid] = Map(
                        {"title": "fix", "completions": Map({"x": {"by": "mallory", "at": 1.0}})}
                    )

                for what, data in {
                    "plain values": raw(room, plain),
                    "a replaced task": raw(room, replace),
                    "an origin-only overwrite of verify": RawWriter(MALLORY + 7).entry(
                        "verify",
                        "any",
                        [0],
                        after=entry_id(room, "verify", nested_type_id(room, tid, "backlog")),
                    ),
                }.items():
                    code, reason = await attempt(url, "mallory", data)
                    assert code == 4403, (what, reason)
                local = Replica("reader")
                local.apply_update(room)
                local.apply_update(raw(room, plain))
                assert local.tasks("backlog").get(tid).status == "open"  # not counted
                await alice.flush(timeout=10)
                task = alice.tasks("backlog").get(tid)
                assert (task.status, task.verify) == ("open", 2)

    run(body())


def test_a_registration_that_makes_an_approval_count_freezes_the_spec_at_the_hub(
    tmp_path: Path,
) -> None:
    """Review (issue 21): the hub knew a spec was not frozen, then an update that only
    registered an approver's client made its approval count; the hub must see the freeze."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/room"
            async with agent(url, "alice") as alice:
                alice.spec("api").set("get", "x")
                alice.spec("api").freeze(quorum=1)
                await alice.flush(timeout=10)
                room = alice.encode_update()
                late = MALLORY + 9
                approve = raw(
                    room,
                    lambda d: d.get("api", type=Map).__setitem__(
                        f"approval:{late}", {"by": "mallory", "at": 1.0}
                    ),
                    client_id=late,
                )
                assert (await attempt(url, "mallory", approve))[0] is None
                with_approval = Replica("r")
                with_approval.apply_update(room)
                with_approval.apply_update(approve)
                register = raw(
                    with_approval.encode_update(),
                    lambda d: d.get("__crdtdoc_agents", type=Map).__setitem__(str(late), "mallory"),
                    client_id=late,
                )
                assert (await attempt(url, "mallory", register))[0] is None
                write = forged(
                    with_approval.encode_update(),
                    lambda r: (
                        r.spec("api")
                        ._root()
                        .__setitem__("m:late", {"member": "get", "value": 1, "by": "mallory"})
                    ),
                )
                assert (await attempt(url, "mallory", write))[0] == 4403  # frozen now

    run(body())

"""The change feed: what changed since a version, in which artifact, by which agent."""

from __future__ import annotations

import pycrdt

from crdtdoc import Replica, Version
from tests.support.builders import sync


def test_inserts_sets_deletes_and_removes_are_attributed() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("design").insert(0, "# Design\nids are UUIDs\n")
    alice.map("spec").set("getUser", "(id) -> User")
    alice.map("spec").set("old", 1)
    sync(alice, bob)
    mark = bob.version()

    bob.document("design").delete(9, 4)  # "ids " -> deleted by bob
    bob.document("design").insert(0, "!")
    bob.map("spec").set("getUsersByRole", "(role) -> list[User]")
    bob.map("spec").delete("old")
    sync(alice, bob)

    for replica in (alice, bob):
        changes = replica.changes_since(mark)
        described = sorted(c.describe() for c in changes)
        assert described == sorted(
            [
                "bob inserted '!' at line 1 of design",
                "bob deleted 4 characters from design",
                "bob set spec.getUsersByRole = '(role) -> list[User]'",
                "bob removed spec.old",
            ]
        ), replica.agent
        assert all(c.agent == "bob" for c in changes)


def test_nothing_changed_since_now() -> None:
    r = Replica("a")
    r.document("d").insert(0, "x")
    r.document("d").delete(0, 1)
    assert r.changes_since(r.version()) == []
    assert r.changes_since(r.version().token()) == []


def test_inserted_then_deleted_text_cancels_out() -> None:
    r = Replica("a")
    mark = r.version()
    r.document("d").insert(0, "hello")
    r.document("d").delete(1, 3)
    changes = r.changes_since(mark)
    assert [c.kind for c in changes] == ["insert"] * len(changes)
    assert "".join(c.text for c in changes) == "ho"
    assert sum(c.length for c in changes) == 2


def test_a_late_joiner_attributes_everything() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, "abc")
    bob.apply_update(alice.encode_update())
    bob.document("d").insert(3, "def")
    late = Replica("carol")
    late.apply_update(bob.encode_update())
    described = [c.describe() for c in late.changes_since(None)]
    assert sorted(described) == [
        "alice inserted 'abc' at line 1 of d",
        "bob inserted 'def' at line 1 of d",
    ]


def test_multibyte_text_since_a_mid_item_version() -> None:
    r = Replica("a")
    r.document("d").insert(0, "😀x")
    mark = r.version()
    r.document("d").insert(2, "中")
    (change,) = r.changes_since(mark)
    assert change.text == "中"


def _deleters(replica: Replica, since: Version) -> list[str | None]:
    return [c.agent for c in replica.changes_since(since) if c.kind == "delete"]


def test_a_run_of_deleting_commits_is_attributed_at_each_step_and_costs_one_entry() -> None:
    """Backspacing commits one deletion at a time; each must reach others attributed, and the
    deletions log must not grow by an entry per commit (it used to: 4.2x the bytes Yjs stores
    for the editing trace)."""
    alice, bob = Replica("alice"), Replica("bob")
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    alice.document("d").insert(0, text)
    bob.apply_update(alice.encode_update())
    mark = bob.version()
    raw = pycrdt.Doc()
    raw_text = raw.get("d", type=pycrdt.Text)
    raw_text.insert(0, text)
    for n in range(1, 301):
        seen = bob.version()
        alice.document("d").delete(len(text) - n, 1)
        del raw_text[len(text) - n]
        bob.apply_update(alice.encode_update(seen))
        if n % 50 == 0:
            assert _deleters(bob, mark) == ["alice"], n
            assert bob.document("d").read() == text[: len(text) - n]
    overhead = len(alice.encode_update()) - len(raw.get_update())
    assert overhead < 150, overhead  # registry, kind, one entry; per commit it was ~4 KB


def test_runs_of_two_agents_interleaved_stay_attributed_and_converge() -> None:
    """alice's run goes on after bob's log entry landed behind hers (her entry is then not the
    log's last element), and after she types (a new run)."""
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, "0123456789abcdefghij")
    sync(alice, bob)
    mark = alice.version()
    alice.document("d").delete(19, 1)  # j
    sync(alice, bob)
    bob.document("d").delete(0, 1)  # 0
    sync(alice, bob)
    alice.document("d").delete(17, 1)  # i
    alice.document("d").delete(16, 1)  # h
    alice.document("d").insert(0, "+")
    alice.document("d").delete(16, 1)  # g, a new run
    bob.document("d").delete(1, 1)  # 2 (after "+1"), concurrently
    sync(alice, bob)
    assert alice.document("d").read() == bob.document("d").read() == "+13456789abcdef"
    assert alice.version() == bob.version()
    for replica in (alice, bob):
        deleted: dict[str | None, int] = {}
        for c in replica.changes_since(mark):
            if c.kind == "delete":
                deleted[c.agent] = deleted.get(c.agent, 0) + c.length
        assert deleted == {"alice": 4, "bob": 2}, (replica.agent, deleted)


def test_a_long_run_of_scattered_deletions_keeps_each_update_small() -> None:
    """The run's entry is rewritten at each commit, so it must stop growing: past 16 ranges a
    new entry starts, and every commit's update stays a few dozen bytes."""
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, "ab" * 200)
    bob.apply_update(alice.encode_update())
    mark = bob.version()
    sent: list[bytes] = []
    alice.on_update(lambda update, local: sent.append(update))
    for n in range(100):
        alice.document("d").delete(n, 1)  # every other character: ranges that never join
    for update in sent:
        bob.apply_update(update)
    sizes = [len(update) for update in sent]
    assert max(sizes) < 160, sizes
    deleted = [c for c in bob.changes_since(mark) if c.kind == "delete"]
    assert {c.agent for c in deleted} == {"alice"} and sum(c.length for c in deleted) == 100
    assert bob.document("d").read() == "b" * 100 + "ab" * 100


def test_a_task_removed_whole_is_one_removal_not_one_per_part() -> None:
    """Review (issue 21): removing a task also listed the removal of its fields and notes,
    one of them as "removed task  from backlog" (no id)."""
    from crdtdoc import Replica

    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    task = alice.tasks("backlog").add("x", description="d", labels=["l"])
    alice.tasks("backlog").note(task, "a note")
    bob.apply_update(alice.encode_update())
    v = bob.version()
    with bob.transaction():
        del bob.tasks("backlog")._root()[task]
    assert [c.describe() for c in bob.changes_since(v)] == [f"bob removed task {task} from backlog"]

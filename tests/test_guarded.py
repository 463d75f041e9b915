"""Guarded writes (optimistic concurrency) and artifact-level observation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crdtdoc
from crdtdoc import Change, Replica
from tests.support.builders import sync


def test_a_stale_guarded_write_raises_before_writing_anything() -> None:
    a, b = Replica("alice"), Replica("bob")
    a.spec("api").set("getUser", "(id) -> User")
    a.document("notes").write("hello\n")
    sync(a, b)
    read_at = b.version().token()  # bob reads the spec, then "thinks"
    a.spec("api").set("getUser", "(id: int) -> User")  # meanwhile alice changes it
    sync(a, b)
    before = b.version()
    guarded = b.transaction(expect=read_at, on=[b.spec("api")], note="add listUsers")
    with pytest.raises(crdtdoc.StaleRead, match="alice set getUser in api") as stale, guarded:
        b.spec("api").set("listUsers", "() -> list[User]")
    assert [c.agent for c in stale.value.changes] == ["alice"]
    assert b.version() == before  # nothing was written
    # Changes to other artifacts, and one's own changes, do not make a read stale.
    read_at = b.version()
    a.document("notes").append("more\n")
    b.spec("api").set("deleteUser", "(id: int) -> None")
    sync(a, b)
    with b.transaction(expect=read_at, on=["api"]):
        b.spec("api").set("listUsers", "() -> list[User]")
    # on=() guards every artifact
    with pytest.raises(crdtdoc.StaleRead, match="inserted"), b.transaction(expect=read_at):
        pass


def test_a_guarded_transaction_travels_as_one_update_with_its_note() -> None:
    a, b = Replica("alice"), Replica("bob")
    updates: list[bytes] = []
    a.on_update(lambda update, local: updates.append(update) if local else None)
    tasks = a.tasks("backlog")
    mark = b.version()
    with a.transaction(expect=a.version(), on=[tasks], note="plan the migration"):
        first = tasks.add("design schema")
        tasks.add("write migration", depends_on=[first])
        a.document("design").write("# Migration plan\n")
    assert len(updates) == 1
    b.apply_update(updates[0])
    described = [c.describe() for c in b.changes_since(mark)]
    assert described[0] == "alice noted 'plan the migration' (on backlog)"
    assert len(b.tasks("backlog")) == 2


def test_guard_arguments_are_checked() -> None:
    r = Replica("a")
    with pytest.raises(crdtdoc.InvalidVersionToken), r.transaction(expect="not a token!"):
        pass
    with (
        pytest.raises(crdtdoc.CrdtdocError, match="on= takes artifacts"),
        r.transaction(expect=r.version(), on=[42]),
    ):
        pass
    with pytest.raises(crdtdoc.CrdtdocError, match="non-empty str"), r.transaction(note=""):
        pass


def test_observe_reports_local_and_remote_changes_until_unsubscribed() -> None:
    a, b = Replica("alice"), Replica("bob")
    seen: list[list[Change]] = []
    stop = b.observe(seen.append)
    tid = b.tasks("backlog").add("local task")
    assert [c.kind for c in seen[-1]] == ["task-added"]
    sync(b, a)
    a.tasks("backlog").claim(tid)
    a.spec("api").set("ping", "() -> str")
    sync(a, b)
    kinds = sorted(c.kind for batch in seen[1:] for c in batch)
    assert kinds == ["claimed", "member-set"]
    assert all(c.agent == "alice" for batch in seen[1:] for c in batch)
    stop()
    a.document("d").insert(0, "after")
    sync(a, b)
    assert len(seen) == 2


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 5)), max_size=25))
def test_the_quick_staleness_test_agrees_with_the_full_change_feed(
    steps: list[tuple[str, int]],
) -> None:
    """`changes_by_others` skips the change feed when the root index shows that others touched
    none of the artifacts asked about; it must give what the full feed gives."""
    replicas = {"alice": Replica("alice"), "bob": Replica("bob")}
    alice = replicas["alice"]
    marks = [alice.version()]
    for who, what in steps:
        r = replicas[who]
        if what == 0:
            r.document("design").insert(0, f"{who} ")
        elif what == 1:
            r.tasks("backlog").add(f"task by {who}")
        elif what == 2:
            r.spec("api").set("getUser", who)
        elif what == 3 and r.document("design").read():
            r.document("design").delete(0, 1)
        elif what == 4:
            tasks = r.tasks("backlog").list()
            if tasks:
                r.tasks("backlog").note(tasks[0].id, f"note by {who}")
        other = replicas["bob" if who == "alice" else "alice"]
        other.apply_update(r.encode_update(since=other.version()))
        marks.append(alice.version())
    for since in marks:
        for names in ({"design"}, {"backlog"}, {"api"}, {"design", "api"}):
            full = [
                c.describe()
                for c in alice._changes(since)
                if c.client_id != alice.client_id and c.artifact in names
            ]
            quick = [c.describe() for c in alice.changes_by_others(since, names, alice.client_id)]
            assert quick == full

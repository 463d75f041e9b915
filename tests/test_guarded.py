"""Guarded writes (optimistic concurrency) and artifact-level observation."""

from __future__ import annotations

import pytest

import crdtdoc
from crdtdoc import Change, Replica
from tests.artifacts.test_tasks import sync


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
    with pytest.raises(crdtdoc.InvalidToken), r.transaction(expect="not a token!"):
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

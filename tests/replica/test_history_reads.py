"""`crdtdoc.replica.history_reads`: the layer that reads the room's past off the replica's own
document: which roots a change touched (cheaply, for notifications), history entries in
artifact terms, and the arguments its public calls check."""

from __future__ import annotations

import pytest

from crdtdoc import Replica, UsageError


def test_roots_touched_since_a_version_name_what_changed_there() -> None:
    r = Replica("alice", history=True)
    r.document("design").insert(0, "x")
    r.tasks("backlog").add("t")
    v = r.version()
    assert r.roots_touched(v) == set()
    r.document("design").insert(0, "y")
    assert "design" in r.roots_touched(v) and "backlog" not in r.roots_touched(v)
    assert r.roots_touched(v, but=r.client_id) == set()  # only others' writing, and deletions
    r.document("design").delete(0, 1)
    assert "design" in r.roots_touched(v, but=r.client_id)


def test_history_entries_describe_each_step_with_its_version() -> None:
    r = Replica("alice", history=True)
    r.document("design").insert(0, "one\n")
    (entry,) = r.history("design")
    assert entry.agent == "alice" and r.at(entry.version).document("design").read() == "one\n"
    assert entry.describe() == f"alice inserted 'one\\n' at line 1 of design\n  at {entry.version}"


def test_the_calls_check_their_arguments() -> None:
    r = Replica("alice", history=True)
    with pytest.raises(UsageError):
        r.built_on("")
    with pytest.raises(UsageError):
        r.plan_revert(None)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        r.history("d", limit=2.5)  # type: ignore[arg-type]

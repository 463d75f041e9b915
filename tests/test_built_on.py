"""`crdtdoc.built_on`: what others built on an agent's work, read off the document (exact:
written on it, or after a change of theirs that was) and, with the hub's record, whose writers
had been sent it; `until` and `descendants` for one change; the count of changes the record
does not cover."""

from __future__ import annotations

import pytest

from crdtdoc import Replica, UsageError
from crdtdoc.history import HAD_BEEN_SENT, WROTE_ON
from crdtdoc.provenance import Provenance, WriteRecord
from tests.support.builders import sync as synced


def test_built_on_lists_what_others_wrote_on_top_and_after() -> None:
    a, b, c, d = team = [Replica(n, history=True) for n in ("alice", "bob", "carol", "dave")]

    def sync() -> None:
        synced(*team)

    a.document("design").insert(0, "Intro.\n")
    a.document("other").insert(0, "unrelated\n")
    sync()
    v = b.version()
    b.document("design").append("Retry forever.\n")
    sync()
    c.document("design").replace("forever", "forever (carol: with backoff)")
    sync()
    c.document("other").append("carol later\n")  # carol had seen it: built on, too
    d.document("other").append("dave elsewhere\n")  # touches nothing of bob's: not found
    sync()
    built = a.built_on("bob", since=v)
    assert [(e.agent, e.changes[0].text) for e in built] == [
        ("carol", " (carol: with backoff)"),
        ("carol", "carol later\n"),
    ]
    assert a.built_on("bob", since=a.version()) == []
    assert a.built_on("carol") == []  # nobody wrote on top of carol's work
    assert {e.agent for e in a.built_on("alice")} == {"bob", "carol", "dave"}


def test_built_on_and_descendants_with_the_record() -> None:
    names = ("alice", "bob", "carol", "dave", "erin")
    a, b, c, d, e = team = [Replica(n, history=True) for n in names]

    def sync() -> None:
        synced(*team)

    a.document("design").insert(0, "Intro.\n")
    sync()
    v = a.version()
    b.document("design").append("Retry forever.\n")
    sync()
    c.document("notes").insert(0, "carol elsewhere\n")
    d.document("todo").insert(0, "dave elsewhere\n")
    e.document("ideas").insert(0, "erin elsewhere\n")  # the record does not cover her
    sync()
    a.document("design").replace("forever", "forever, backing off")
    sync()
    bob = b.client_id
    seen_bob = {bob: b.version().clocks[bob], a.client_id: v.clocks[a.client_id]}
    record = {  # carol had been sent bob's line; dave wrote without it
        c.client_id: WriteRecord(c.client_id, 0, 10**6, seen_bob, 0.0, False),
        d.client_id: WriteRecord(d.client_id, 0, 10**6, {a.client_id: 1}, 0.0, True),
    }
    provenance = Provenance(record.values())

    listed = a.built_on("bob", since=v, provenance=provenance)
    assert [(e.agent, e.basis) for e in listed] == [("carol", HAD_BEEN_SENT), ("alice", WROTE_ON)]
    assert [(e.agent, e.basis) for e in a.built_on("bob", since=v)] == [("alice", WROTE_ON)]
    assert "(had been sent it before writing: may have read it)" in listed[0].describe()
    assert (listed.recorded, listed.unrecorded) == (True, 1)  # erin's (alice's: on it)
    plain = a.built_on("bob", since=v)
    assert (plain.recorded, plain.unrecorded) == (False, 0)

    after_fix = a.history("design", limit=None)[1].version
    b.document("design").insert(0, "Bob again.\n")  # bob's later work: left out by `until`
    sync()
    d.document("design").replace("Bob again.", "Bob again, checked.")
    sync()
    assert [e.agent for e in a.built_on("bob", since=v, until=after_fix)] == ["alice"]
    assert [e.agent for e in a.built_on("bob", since=v)] == ["alice", "dave"]
    (fix,) = a.history("design", limit=None)[1:2]
    assert fix.agent == "bob"
    assert [e.agent for e in a.descendants(fix, provenance=provenance)] == ["carol", "alice"]
    assert [e.agent for e in a.descendants(fix)] == ["alice"]
    with pytest.raises(UsageError, match="HistoryEntry"):
        a.descendants("bob")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Provenance"):
        a.built_on("bob", provenance={})  # type: ignore[arg-type]

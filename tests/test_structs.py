"""`crdtdoc.structs`: a whole document read once: items by id, the deletions log's claims found
by id (not by scanning every entry), map keys' liveness, and UTF-16 slicing of strings."""

from __future__ import annotations

from crdtdoc import Replica
from crdtdoc.idset import IdSet
from crdtdoc.structs import Claims, read_structs, utf16_range


def test_claims_find_the_entries_that_claim_an_id_in_log_order() -> None:
    first, second, third = IdSet(), IdSet(), IdSet()
    first.add(1, 0, 10)
    second.add(1, 5, 6)
    third.add(2, 0, 3)
    claims = Claims([(7, 0, first), (8, 4, second), (9, 1, third)])
    part = IdSet()
    part.add(1, 5, 7)
    assert [author for author, _ in claims.overlapping(part)] == [7, 8]
    far = IdSet()
    far.add(1, 50, 60)
    assert claims.overlapping(far) == []


def test_a_key_is_live_while_one_of_its_entries_is_written_and_not_deleted() -> None:
    r = Replica("alice", history=True)
    r.map("m").set("k", 1)
    before = r.version()
    r.map("m").delete("k")
    doc = read_structs(r.encode_update())
    key = ("m", (), "k")
    assert not doc.key_live(key, r.version().deleted)
    assert doc.key_live(key, before.deleted, before.clocks)
    assert not doc.key_live(("m", (), "other"), IdSet())


def test_utf16_ranges_count_as_yjs_counts() -> None:
    assert utf16_range("ab\U0001f600cd", 2, 4) == "\U0001f600"
    assert utf16_range("abc", 1, 9) == "bc"
    assert utf16_range("", 0, 1) == ""

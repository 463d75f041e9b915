"""`crdtdoc.places`: a place is equal to another with the same parent, key and content kind
(whatever object holds it), a collected place is the one without a parent, and every content
that belongs to a sequence belongs to exactly one kind of it."""

from __future__ import annotations

from crdtdoc.contents import ANY, BINARY, DELETED, DOC, EMBED, FORMAT, GC, STRING, TYPE
from crdtdoc.places import ARRAY, COLLECTED, SEQUENCE_FAMILY, TEXT, Place


def test_places_compare_and_hash_by_what_they_say() -> None:
    a, b = Place("doc", None, STRING), Place("doc", None, STRING)
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != Place("doc", None, ANY)
    assert a != Place("doc", "key", STRING)
    assert Place((1, 2), None, STRING) != Place((1, 3), None, STRING)
    assert len({a, b, Place((1, 2), "k", ANY)}) == 2
    assert repr(a) == "Place('doc', None, 4)"


def test_only_a_place_without_a_parent_is_collected() -> None:
    assert COLLECTED.collected and COLLECTED.content == GC
    assert Place(None, None, STRING).collected
    assert not Place("doc", None, STRING).collected
    assert not Place((1, 2), "k", ANY).collected


def test_text_and_array_contents_are_told_apart() -> None:
    assert {c for c, kind in SEQUENCE_FAMILY.items() if kind == TEXT} == {STRING, EMBED, FORMAT}
    assert {c for c, kind in SEQUENCE_FAMILY.items() if kind == ARRAY} == {ANY, BINARY, DOC}
    assert TYPE not in SEQUENCE_FAMILY and DELETED not in SEQUENCE_FAMILY  # fit either

"""`crdtdoc.replica.snapshots`: the document at a version, written from crdtdoc's own parse
(struct boundaries cut by the version included), refused when the content is not held, and
where items stand in a text."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from crdtdoc import HistoryUnavailable, Version
from crdtdoc.replica.snapshots import past_update, text_offsets, unheld
from crdtdoc.updates import decode_state_vector, parse_update


def versioned(doc: Doc) -> Version:  # type: ignore[type-arg]
    state = decode_state_vector(doc.get_state())
    return Version(state, parse_update(doc.get_update()).delete_set)


def test_a_version_inside_one_struct_is_cut_there() -> None:
    """yrs merges the typist's letters into one struct; a version after the first three of
    them shows three, not the whole struct (yrs's own snapshot reading shows all five)."""
    doc: Doc = Doc(client_id=1, skip_gc=True)  # type: ignore[type-arg]
    text = doc.get("t", type=Text)
    text += "abc"
    v = versioned(doc)
    text += "de"
    assert len(parse_update(doc.get_update(), details=True).items or []) == 1  # one struct
    past: Doc = Doc()  # type: ignore[type-arg]
    past.apply_update(past_update(doc, versioned(doc), v))
    assert str(past.get("t", type=Text)) == "abc"


def test_the_past_needs_a_version_seen_and_content_held() -> None:
    doc: Doc = Doc(client_id=1)  # type: ignore[type-arg]  (collects deleted content)
    text = doc.get("t", type=Text)
    text += "hello world"
    v = versioned(doc)
    del text[0:6]
    now = versioned(doc)
    assert unheld(parse_update(doc.get_update(), details=True).items or [], v) == 6
    with pytest.raises(HistoryUnavailable, match="no longer holds"):
        past_update(doc, now, v)
    with pytest.raises(HistoryUnavailable, match="has not seen"):
        past_update(doc, now, Version({1: 99}))
    past: Doc = Doc()  # type: ignore[type-arg]
    past.apply_update(past_update(doc, now, now))
    assert str(past.get("t", type=Text)) == "world"


def test_text_offsets_order_live_items_as_the_text_reads() -> None:
    doc: Doc = Doc(client_id=1)  # type: ignore[type-arg]
    text = doc.get("t", type=Text)
    text += "world"
    text.insert(0, "hello ")
    assert text_offsets(text, [(1, 0), (1, 5)]) == [6, 0]

"""`crdtdoc.replica.snapshots`: the document at a version, written from crdtdoc's own parse
(struct boundaries cut by the version included), refused when the content is not held, and
where items stand in a text."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from crdtdoc import HistoryUnavailable, Replica, Version
from crdtdoc.contents import ANY, JSON, STRING
from crdtdoc.replica.snapshots import collected, past_update, text_offsets, unheld
from crdtdoc.updates import decode_state_vector, parse_update
from tests.support.builders import sync


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


def _render(replica: Replica) -> tuple[str, dict[str, object], list[object]]:
    tasks = replica.tasks("t").list() if "t" in replica.artifacts() else []
    return replica.document("d").read(), replica.map("m").to_dict(), [t.to_json() for t in tasks]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_collecting_up_to_a_mark_keeps_every_later_version_readable(seed: int) -> None:
    """Two agents edit a text, a map (values overwritten, keys deleted) and a task list; at a
    random mark, what was deleted by then is collected (`collected`, as a hub's horizon does).
    Every version from the mark on reads as before, the content of what was deleted by the
    mark is gone, and a fresh replica reads the collected document the same."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    a, b = Replica("ann", history=True), Replica("ben", history=True)
    versions = []
    for step in range(rng.randrange(10, 40)):
        r = rng.choice((a, b))
        doc, m, tasks = r.document("d"), r.map("m"), r.tasks("t")
        kind = rng.randrange(6)
        text = doc.read()
        if kind == 0 or not text:
            doc.insert(rng.randrange(len(text) + 1), rng.choice(["x", "yz", "héllo", "🙂 ok"]))
        elif kind == 1:
            at = rng.randrange(len(text))
            doc.delete(at, min(rng.randrange(1, 4), len(text) - at))
        elif kind == 2:
            m.set(rng.choice("pq"), step)
        elif kind == 3:
            m.delete(rng.choice("pq"))
        elif kind == 4 or not tasks.ids():
            tasks.add(f"task {step}")
        else:
            tasks.update(rng.choice(tasks.ids()), title=f"retitled {step}")
        if rng.random() < 0.5:
            sync(a, b)
        versions.append(a.version())
    sync(a, b)
    versions.append(a.version())
    mark = versions[rng.randrange(len(versions))]
    later = [v for v in versions if mark <= v]
    before = {v.token(): _render(a.at(v)) for v in later}
    now = _render(a)
    a_full = a.encode_update()
    kept = collected(a_full, mark.deleted)
    fresh = Replica("fresh", history=True)
    fresh.apply_update(kept)
    assert _render(fresh) == now
    for v in later:
        assert _render(fresh.at(v)) == before[v.token()], v.token()
    for item in parse_update(kept, details=True).items or []:  # what the mark deleted: gone
        if item.content in (STRING, ANY, JSON):
            assert mark.deleted.gaps(item.client, item.clock, item.clock + item.length)
    assert a.forget_past(mark) == (kept != a_full)
    assert _render(a) == now

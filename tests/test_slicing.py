"""Slicing a large update: the slices, applied in order, do exactly what the whole does, and
each slice's parse is what the parser itself reads from the slice's bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crdtdoc import Replica
from crdtdoc.slicing import slice_update
from crdtdoc.updates import parse_update
from tests.helpers import content, writer_stream


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 6))
def test_slices_in_order_do_what_the_whole_does(seed: int, size: int) -> None:
    source = Replica("source")
    for update in writer_stream(seed, writers=3, steps=25):
        source.apply_update(update)
    whole = source.encode_update()  # several clients, deletions, collected content
    parsed = parse_update(whole, details=True)
    parts = slice_update(whole, parsed, {}, size)
    assert len(parts) > 1 or parsed.count <= size
    assert sum(p.count for _, p in parts) == parsed.count
    assert all(p.count <= size for _, p in parts)
    for data, part in parts:
        again = parse_update(data, details=True)
        assert (again.structs, again.references, again.delete_set, again.count) == (
            part.structs,
            part.references,
            part.delete_set,
            part.count,
        ), f"seed={seed}"
        assert again.items == part.items and again.ds_offset == part.ds_offset
    by_whole, by_slices = Replica("a"), Replica("b")
    by_whole.apply_update(whole)
    for data, part in parts:
        by_slices.apply_update(data, parsed=part)
    assert not by_slices.pending(), f"seed={seed}"
    assert by_slices.version() == by_whole.version(), f"seed={seed}"
    assert content(by_slices) == content(by_whole), f"seed={seed}"


def test_a_small_update_is_left_whole() -> None:
    writer = Replica("w")
    writer.document("d").insert(0, "hi")
    data = writer.encode_update()
    parsed = parse_update(data, details=True)
    assert slice_update(data, parsed, {}) == [(data, parsed)]


def test_an_update_that_cannot_be_applied_yet_is_left_whole() -> None:
    writer = Replica("w")
    doc = writer.document("d")
    doc.insert(0, "a")
    before = writer.version()
    for i in range(10):
        doc.insert(0, str(i))  # each at the front: structs that do not merge
    later = writer.encode_update(before)  # builds on the first insert
    parsed = parse_update(later, details=True)
    assert parsed.count > 3
    assert slice_update(later, parsed, {}, 3) == [(later, parsed)]
    assert len(slice_update(later, parsed, before.clocks, 3)) > 1

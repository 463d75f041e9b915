"""Slicing a large update: the slices, applied in order, do exactly what the whole does, and
each slice's parse is what the parser itself reads from the slice's bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crdtdoc import Replica
from crdtdoc.contents import SKIP
from crdtdoc.encoding import Encoder
from crdtdoc.slicing import slice_update
from crdtdoc.updates import parse_update
from tests.support.builders import content, writer_stream


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


def test_a_skip_over_ids_already_present_does_not_keep_an_update_whole() -> None:
    """A section may open with a Skip over clocks the document has (yrs and Yjs both accept it):
    the runs leave the skip out instead of leaving the whole update unsliced."""
    writer = Replica("w", client_id=77)
    doc = writer.document("d")
    doc.insert(0, "seed")
    seed = writer.encode_update()
    before = writer.version()
    for i in range(12):
        doc.insert(0, str(i % 10))
    rest = writer.encode_update(before)
    parsed = parse_update(rest, details=True)
    assert parsed.starts is not None
    start = before.clocks[77]
    head = Encoder()
    for number in (1, parsed.count + 1, 77, 0):
        head.write_var_uint(number)
    skip = Encoder()
    skip.write_var_uint(start)
    skipping = head.to_bytes() + bytes([SKIP]) + skip.to_bytes() + rest[parsed.starts[0] :]
    with_skip = parse_update(skipping, details=True)
    assert with_skip.structs[77].skips == [(0, start)]
    parts = slice_update(skipping, with_skip, before.clocks, 3)
    assert len(parts) >= 4 and all(p.count <= 3 for _, p in parts)
    reader = Replica("r")
    reader.apply_update(seed)
    for data, part in parts:
        assert not reader.apply_update(data, parsed=part)
    assert reader.document("d").read() == doc.read()
    assert slice_update(skipping, with_skip, {}, 3) == [(skipping, with_skip)]  # gap not present

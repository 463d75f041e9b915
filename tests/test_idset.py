from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from crdtdoc.encoding import Decoder
from crdtdoc.idset import IdSet

ranges = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 10)), max_size=12)


def _build(rs: list[tuple[int, int, int]]) -> IdSet:
    s = IdSet()
    for client, start, length in rs:
        s.add(client, start, start + length)
    return s


def _ids(s: IdSet) -> set[tuple[int, int]]:
    return {(c, k) for c, start, end in s for k in range(start, end)}


@given(ranges, ranges)
def test_set_operations_match_python_sets(
    a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]
) -> None:
    x, y = _build(a), _build(b)
    assert _ids(x.union(y)) == _ids(x) | _ids(y)
    assert _ids(x.difference(y)) == _ids(x) - _ids(y)
    assert _ids(x.intersection(y)) == _ids(x) & _ids(y)
    assert x.issubset(y) == (_ids(x) <= _ids(y))
    assert len(x) == len(_ids(x))
    assert all(x.contains(c, k) for c, k in _ids(x))
    assert not any(x.contains(c, k) for c, k in _ids(y) - _ids(x))
    for result in (x.union(y), x.difference(y), x.intersection(y), x.clip_to({1: 20, 2: 5})):
        assert result == IdSet(result.ranges)  # sorted, disjoint, merged, as if built anew


@given(ranges)
def test_equal_sets_are_equal_however_built(a: list[tuple[int, int, int]]) -> None:
    assert _build(a) == _build(list(reversed(a)))
    assert hash(_build(a)) == hash(_build(list(reversed(a))))


@given(ranges)
def test_encoding_round_trips(a: list[tuple[int, int, int]]) -> None:
    s = _build(a)
    assert IdSet.decode_from(Decoder(s.encode()), max_clock=2**32, max_client=2**53) == s


def test_clip_to_keeps_only_known_ids() -> None:
    s = IdSet({1: [(0, 10)], 2: [(5, 8)]})
    assert s.clip_to({1: 4}).ranges == {1: [(0, 4)]}


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=40))
def test_adding_ranges_in_any_order_keeps_them_sorted_disjoint_and_merged(
    ranges: list[tuple[int, int]],
) -> None:
    ids = IdSet()
    for start, length in ranges:
        ids.add(7, start, start + length)
    covered = {c for start, length in ranges for c in range(start, start + length)}
    out = ids.client_ranges(7)
    assert {c for start, end in out for c in range(start, end)} == covered
    assert all(a[1] < b[0] for a, b in itertools.pairwise(out))  # disjoint, not adjacent
    assert all(start < end for start, end in out)


few = st.lists(st.tuples(st.integers(1, 2), st.integers(0, 400), st.integers(0, 9)), max_size=3)
many = st.lists(st.tuples(st.integers(1, 2), st.integers(0, 400), st.integers(1, 3)), max_size=120)


@given(few, many)
def test_a_small_set_against_a_large_one_matches_python_sets(
    a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]
) -> None:
    """The lopsided case (a delete set checked against a room's) takes the bisecting path of
    `difference`; both ways round, it must agree with plain sets."""
    x, y = _build(a), _build(b)
    assert _ids(x.difference(y)) == _ids(x) - _ids(y)
    assert _ids(y.difference(x)) == _ids(y) - _ids(x)
    assert x.issubset(y) == (_ids(x) <= _ids(y))
    assert x.difference(y) == IdSet(x.difference(y).ranges)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.lists(st.tuples(st.integers(0, 60), st.integers(0, 6)), max_size=8),
        ),
        max_size=5,
    )
)
def test_decoding_any_written_delete_set_equals_adding_its_ranges(
    written: list[tuple[int, list[tuple[int, int]]]],
) -> None:
    """Encoders write ranges in order, but a hostile one may repeat clients, overlap, go
    backwards or write empty ranges: the decoder's fast path for ordered ranges must give what
    adding each range would."""
    from crdtdoc.encoding import Encoder

    enc = Encoder()
    enc.write_var_uint(len(written))
    expected = IdSet()
    for client, ranges in written:
        enc.write_var_uint(client)
        enc.write_var_uint(len(ranges))
        for clock, length in ranges:
            enc.write_var_uint(clock)
            enc.write_var_uint(length)
            expected.add(client, clock, clock + length)
    decoded = IdSet.decode_from(Decoder(enc.to_bytes()), max_clock=2**32, max_client=2**53)
    assert decoded == expected
    assert decoded == IdSet(decoded.ranges)  # sorted, disjoint, merged


@given(ranges)
def test_a_copy_is_equal_and_independent(a: list[tuple[int, int, int]]) -> None:
    """What `Replica.version()` hands out: equal now, untouched by later additions."""
    original = _build(a)
    copy = original.copy()
    assert copy == original
    copy.add(7, 0, 5)
    original.add(8, 0, 5)
    assert not original.contains(7, 0) and not copy.contains(8, 0)
    assert copy == IdSet(copy.ranges) and original == IdSet(original.ranges)


@given(ranges, ranges)
def test_update_in_place_is_the_union_and_leaves_the_other_alone(
    a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]
) -> None:
    x, y = _build(a), _build(b)
    expected, y_before = x.union(y), y.copy()
    x.update(y)
    assert x == expected
    assert x == IdSet(x.ranges)  # sorted, disjoint, merged
    assert y == y_before
    x.add(0, 100, 101)  # ranges handed over are copies: growing one set leaves the other
    assert y == y_before

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


ranges_strategy = st.lists(
    st.tuples(st.integers(1, 2), st.integers(0, 50), st.integers(0, 6)), max_size=15
)


@given(ranges_strategy, ranges_strategy)
def test_difference_and_subset_agree_with_plain_sets(
    a_ranges: list[tuple[int, int, int]], b_ranges: list[tuple[int, int, int]]
) -> None:
    a, b = IdSet(), IdSet()
    for client, start, length in a_ranges:
        a.add(client, start, start + length)
    for client, start, length in b_ranges:
        b.add(client, start, start + length)

    def ids(s: IdSet) -> set[tuple[int, int]]:
        return {(c, x) for c, start, end in s for x in range(start, end)}

    assert ids(a.difference(b)) == ids(a) - ids(b)
    assert a.issubset(b) == (ids(a) <= ids(b))

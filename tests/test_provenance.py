"""`crdtdoc.provenance`: rows read back as the hub sent them (and anything else is refused with
`InvalidMessage` only), chains rebuilt into records, lookups by id, and `built_on` /
`descendants` with a record: who wrote on the work (exact) and who had been sent it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc.errors import InvalidMessage
from crdtdoc.provenance import (
    ANNOUNCED,
    ANNOUNCED_FULL,
    DELTA,
    FULL,
    Provenance,
    StoredRecord,
    WriteRecord,
    records_from_rows,
)
from crdtdoc.updates import encode_state_vector

state_vectors = st.dictionaries(st.integers(0, 2**32), st.integers(0, 2**20), max_size=4)
seens = st.one_of(
    st.tuples(state_vectors.map(encode_state_vector), st.sampled_from([DELTA, FULL])),
    st.tuples(
        st.tuples(state_vectors, state_vectors).map(
            lambda pair: encode_state_vector(pair[0]) + encode_state_vector(pair[1])
        ),
        st.sampled_from([ANNOUNCED, ANNOUNCED_FULL]),
    ),
)
rows = st.builds(
    lambda hub, n, client, start, end, seen, at: StoredRecord(
        hub, n, client, start, end, seen[0], seen[1], at
    ),
    st.text("0123456789abcdef", max_size=8),
    st.integers(0, 2**40),
    st.integers(0, 2**32),
    st.integers(0, 100),
    st.integers(101, 200),
    seens,
    st.floats(0, 2e9),
)


@given(rows)
def test_a_row_reads_back_as_sent(row: StoredRecord) -> None:
    assert StoredRecord.from_wire(row.to_wire()) == row


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=9),
    max_leaves=12,
)


@given(values)
def test_anything_else_is_refused_as_an_invalid_message(value: object) -> None:
    try:
        StoredRecord.from_wire(value)
    except InvalidMessage as exc:
        assert str(exc)


def test_bad_fields_are_refused() -> None:
    good = ["0f", 1, 7, 0, 3, encode_state_vector({1: 2}), FULL, 1.0]
    bad_fields = [(6, 4), (3, 5), (5, b"\xff"), (7, float("nan")), (1, True), (0, "f" * 99)]
    for at, bad in [*bad_fields, (0, "hub"), (6, ANNOUNCED), (1, 2**64)]:
        broken = list(good)
        broken[at] = bad
        with pytest.raises(InvalidMessage):
            StoredRecord.from_wire(broken)


def test_chains_rebuild_per_hub_and_offline_rows_say_what_their_link_lacked() -> None:
    def row(hub: str, n: int, kind: int, *seen: dict[int, int]) -> StoredRecord:
        vectors = b"".join(encode_state_vector(s) for s in seen)
        return StoredRecord(hub, n, 9, n * 10, n * 10 + 1, vectors, kind, 0.0)

    records = records_from_rows(
        [
            row("b", 1, FULL, {1: 5}),
            row("a", 2, DELTA, {2: 1}),
            row("a", 3, ANNOUNCED, {3: 3}, {2: 0}),  # its link had nothing of client 2
            row("a", 1, FULL, {1: 1, 2: 0}),
            row("a", 4, DELTA, {1: 2}),
        ]
    )
    assert [dict(r.seen or {}) for r in records] == [
        {1: 1, 2: 0},
        {1: 1, 2: 1},
        {1: 1, 2: 0, 3: 3},
        {1: 2, 2: 1, 3: 3},
        {1: 5},
    ]
    assert [r.announced for r in records] == [False, False, True, False, False]


def test_a_record_says_what_its_writer_may_have_seen() -> None:
    record = WriteRecord(7, 10, 20, {1: 5}, 0.0, False)
    assert record.may_have_seen(1, 4) and not record.may_have_seen(1, 5)
    assert record.may_have_seen(7, 9) and not record.may_have_seen(7, 10)  # its own, before
    assert not record.may_have_seen(2, 0)
    assert WriteRecord(7, 10, 20, None, 0.0, False).may_have_seen(2, 0)  # not known: may have

    unknown = WriteRecord(7, 30, 40, None, 0.0, False)
    provenance = Provenance([record, WriteRecord(7, 20, 30, {1: 9}, 0.0, False), unknown])
    assert len(provenance) == 2  # the unknown one counts as none
    assert provenance.record_of(7, 35) is None
    assert provenance.record_of(7, 25) == WriteRecord(7, 20, 30, {1: 9}, 0.0, False)
    assert provenance.record_of(7, 30) is None and provenance.record_of(8, 1) is None
    assert [r.start for r in provenance.overlapping(7, 15, 21)] == [10, 20]
    assert provenance.may_have_seen(7, 15, 25, {1: 7})  # the second record had been sent it
    assert not provenance.may_have_seen(7, 10, 20, {1: 7})
    assert not provenance.may_have_seen(7, 40, 50, {1: 0})  # no record: the hub does not know


def test_records_of_two_hubs_for_the_same_ids_are_all_read() -> None:
    """Attack review: with overlapping records (two hubs recorded the same ids), a lookup read
    only the last one starting before it and missed the honest one."""
    wide = WriteRecord(7, 0, 100, {1: 9}, 0.0, False)  # had been sent 1:0..9
    narrow = WriteRecord(7, 10, 20, {}, 0.0, True)  # another hub's, claiming nothing seen
    provenance = Provenance([wide, narrow])
    assert provenance.overlapping(7, 30, 40) == [wide]
    assert provenance.overlapping(7, 12, 13) == [wide, narrow]
    assert provenance.may_have_seen(7, 12, 13, {1: 3})  # one record says so: it may have

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
    DELTA,
    FULL,
    Provenance,
    StoredRecord,
    WriteRecord,
    records_from_rows,
)
from crdtdoc.updates import encode_state_vector

state_vectors = st.dictionaries(st.integers(0, 2**32), st.integers(0, 2**20), max_size=4)
rows = st.builds(
    StoredRecord,
    st.text(max_size=8),
    st.integers(0, 2**40),
    st.integers(0, 2**32),
    st.integers(0, 100),
    st.integers(101, 200),
    state_vectors.map(encode_state_vector),
    st.sampled_from([DELTA, FULL, ANNOUNCED]),
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
    good = ["h", 1, 7, 0, 3, encode_state_vector({1: 2}), FULL, 1.0]
    for at, bad in ((6, 3), (3, 5), (5, b"\xff"), (7, float("nan")), (1, True), (0, "h" * 99)):
        broken = list(good)
        broken[at] = bad
        with pytest.raises(InvalidMessage):
            StoredRecord.from_wire(broken)


def test_chains_rebuild_per_hub_and_announced_rows_stand_alone() -> None:
    def row(hub: str, n: int, seen: dict[int, int], kind: int) -> StoredRecord:
        return StoredRecord(hub, n, 9, n * 10, n * 10 + 1, encode_state_vector(seen), kind, 0.0)

    records = records_from_rows(
        [
            row("b", 1, {1: 5}, FULL),
            row("a", 2, {2: 1}, DELTA),
            row("a", 3, {3: 3}, ANNOUNCED),
            row("a", 1, {1: 1, 2: 0}, FULL),
            row("a", 4, {1: 2}, DELTA),
        ]
    )
    assert [dict(r.seen or {}) for r in records] == [
        {1: 1, 2: 0},
        {1: 1, 2: 1},
        {3: 3},
        {1: 2, 2: 1},
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

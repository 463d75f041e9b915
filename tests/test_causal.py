"""The causal buffer: what an entry is charged matches the memory it takes, each holder is held
to its share, and expired entries leave nothing behind."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from crdtdoc import Replica
from crdtdoc.causal import BufferLimits, CausalBuffer
from crdtdoc.errors import PendingLimitExceeded
from crdtdoc.idset import IdSet
from crdtdoc.replica import ReplicaLimits
from crdtdoc.updates import parse_update
from tests.support.builders import orphans, tiny_structs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("shape", ["many small", "few large"])
def test_the_charge_follows_the_memory_entries_really_take(shape: str) -> None:
    updates = orphans(2000, client=9) if shape == "many small" else [tiny_structs(20_000, 9)] * 3
    buffer = CausalBuffer(BufferLimits(), lambda origin: origin, Clock())
    missing = IdSet()
    missing.add(9, 0, 1)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for data in updates:  # a copy of the bytes and their parse, as the replica keeps them
        copy = bytearray(data)
        buffer.hold(bytes(copy), parse_update(bytes(copy)), IdSet(), "sender", False, missing)
    del copy
    taken = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert buffer.cost >= taken * 0.8, (buffer.cost, taken)
    assert buffer.cost <= taken * 3, (buffer.cost, taken)


def test_a_holder_past_its_share_is_refused_and_others_carry_on() -> None:
    limits = BufferLimits(max_updates_per_holder=10, max_bytes_per_holder=128 * 1024)
    buffer = CausalBuffer(limits, lambda origin: origin, Clock())
    missing = IdSet()
    missing.add(1, 0, 5)
    updates = orphans(11, client=9)
    for data in updates[:10]:
        buffer.hold(data, parse_update(data), IdSet(), "mallory", False, missing)
    with pytest.raises(PendingLimitExceeded, match="this sender"):
        buffer.hold(updates[10], parse_update(updates[10]), IdSet(), "mallory", False, missing)
    buffer.hold(updates[10], parse_update(updates[10]), IdSet(), "alice", False, missing)
    buffer.hold(updates[10], parse_update(updates[10]), IdSet(), "mallory", True, missing)
    assert buffer.share("mallory")[0] == 11 and buffer.share("alice")[0] == 1
    big = tiny_structs(30_000, 9)
    with pytest.raises(PendingLimitExceeded):  # bytes count too
        buffer.hold(big, parse_update(big), IdSet(), "bob", False, missing)


def test_expired_entries_are_unfiled_and_their_data_released() -> None:
    clock = Clock()
    buffer = CausalBuffer(BufferLimits(), lambda origin: origin, clock)
    for client in range(50):  # each waits for a client that never comes
        missing = IdSet()
        missing.add(1000 + client, 0, 1)
        data = orphans(1, client=9)[0]
        buffer.hold(data, parse_update(data), IdSet(), "mallory", False, missing)
    kept = IdSet()
    kept.add(5, 0, 1)
    buffer.hold(b"", None, kept, None, True, kept)  # trusted: never expires
    clock.now = 10.0
    assert buffer.expire(30.0) == []
    clock.now = 31.0
    dropped = buffer.expire(30.0)
    assert len(dropped) == 50 and len(buffer) == 1 and buffer.share("mallory") == (0, 0)
    assert list(buffer._filed) == [5]  # no filing keeps a dropped entry alive
    assert buffer.deletions() == kept


def test_a_replica_holds_deletions_of_unknown_ids_until_they_arrive_or_expire() -> None:
    clock = Clock()
    writer = Replica("w")
    writer.document("d").insert(0, "hello")
    first = writer.encode_update()
    before = writer.version()
    writer.document("d").delete(0, 2)
    deletion = writer.encode_update(before)
    reader = Replica("r", clock=clock)
    assert reader.apply_update(deletion)  # it waits: the ids it deletes are not here yet
    # two entries: the deletion, and the deletions-log entry that attributes it (a struct)
    assert reader.pending().deletions and reader.pending_count == 2
    reader.apply_update(first)
    assert reader.document("d").read() == "llo" and not reader.pending()
    late = Replica("late", clock=clock)
    late.apply_update(deletion)
    clock.now = 100.0
    assert late.expire_pending(30.0) == [None, None]
    late.apply_update(first)
    assert late.document("d").read() == "hello"  # the expired deletion is gone, as documented


def test_per_origin_shares_at_the_replica() -> None:
    limits = ReplicaLimits(max_pending_updates_per_origin=5)
    reader = Replica("r", limits=limits)
    reader.pending_holder = lambda origin: origin
    updates = orphans(8, client=9)
    for data in updates[:5]:
        reader.apply_update(data, origin="mallory")
    with pytest.raises(PendingLimitExceeded):
        reader.apply_update(updates[5], origin="mallory")
    assert reader.apply_update(updates[5], origin="alice")  # alice's share is untouched
    assert reader.pending_of("mallory") == (5, reader.pending_of("mallory")[1])

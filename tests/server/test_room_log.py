"""`RoomLog` (`crdtdoc.server.room_log`) on a stand-in room that records what it asks of the store,
no hub: positions that continue where the store left off, durability that follows the store's
acknowledgements in order, compaction at the thresholds (on SQLite at once, across hubs in the
background, retried over a gap, surviving a failure), and entries of the shared log applied
once, in any order, with damaged data and covered snapshots left alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest

from crdtdoc import Replica
from crdtdoc.errors import StorageError
from crdtdoc.server.cluster import FROM_LOG
from crdtdoc.server.commit import StoredRoom
from crdtdoc.server.config import HubConfig
from crdtdoc.server.intake import pending_holder
from crdtdoc.server.metrics import HubMetrics
from crdtdoc.server.pgstore import Fetched
from crdtdoc.server.room_log import RETRY_COMPACTION_SECONDS, RoomLog
from crdtdoc.versions import Version


class Recorder:
    """The store's committer and the durable announcer, recording what they are asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.taken: list[Callable[[], Callable[[], None]]] = []

    def append(
        self, room: str, seq: int, data: bytes, on_taken: Any, records: tuple[Any, ...] = ()
    ) -> None:
        self.calls.append(("append", room, seq, data))
        self.taken.append(on_taken)

    def touch(self, room: str, on_taken: Any) -> None:
        self.calls.append(("touch", room))
        self.taken.append(on_taken)

    def compact(self, room: str, seq: int, data: bytes, on_taken: Any, horizon: Any = None) -> None:
        self.calls.append(("compact", room, seq, data))

    def durable(self, version: Version) -> None:
        self.calls.append(("durable", version))


class Clock:
    """A scheduler whose time the test moves and whose background work it runs."""

    def __init__(self) -> None:
        self.now = 100.0
        self.spawned: list[Coroutine[Any, Any, Any]] = []
        self.later: list[tuple[float, Callable[[], None]]] = []

    def monotonic(self) -> float:
        return self.now

    def spawn(self, work: Coroutine[Any, Any, Any], done: Any = None) -> None:
        self.spawned.append(work)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.later.append((delay, callback))

    def run_spawned(self) -> None:
        work, self.spawned = self.spawned, []
        for coro in work:
            asyncio.run(coro)


class SharedStore:
    """The PostgreSQL store's `compact`, answering as told."""

    def __init__(self) -> None:
        self.compacted: list[int] = []
        self.answer: bool | StorageError = True

    async def compact(self, room: str, seq: int, snapshot: bytes, horizon: Any = None) -> bool:
        if isinstance(self.answer, StorageError):
            raise self.answer
        self.compacted.append(seq)
        return self.answer


def room_log(shared: bool = False, **settings: Any) -> tuple[RoomLog, SimpleNamespace]:
    recorder = Recorder()
    replica = Replica("hub")
    replica.pending_holder = pending_holder  # what waits is charged to its sender, as in a room
    room = SimpleNamespace(
        name="r",
        config=HubConfig(db="unused.db", **settings),
        replica=replica,
        committer=recorder,
        cluster=SimpleNamespace(store=SharedStore()) if shared else None,
        scheduler=Clock(),
        metrics=HubMetrics(dict),
        announcer=recorder,
    )
    return RoomLog(room), room


def write(room: SimpleNamespace, log: RoomLog, writer: Replica, text: str) -> bytes:
    """`writer` edits; the room's replica commits it and tells its log, as a room does."""
    before = writer.version()
    writer.document("d").append(text)
    update = writer.encode_update(before)
    room.replica.apply_update(update)
    log.committed(update, from_log=False)
    return update


def metric(room: SimpleNamespace, name: str) -> float:
    return room.metrics.registry.get_sample_value(name) or 0.0


def test_appends_continue_where_the_store_left_off() -> None:
    log, room = room_log()
    log.restore(StoredRoom(snapshot=b"s" * 10, snapshot_seq=4, updates=[b"abc", b"de"], last_seq=6))
    assert log.size_bytes == 15 and log.fully_durable
    writer = Replica("w")
    first = write(room, log, writer, "x")
    second = write(room, log, writer, "y")
    appended = [c for c in room.committer.calls if c[0] == "append"]
    assert appended == [("append", "r", 7, first), ("append", "r", 8, second)]
    assert log.size_bytes == 15 + len(first) + len(second)
    assert not log.fully_durable


def test_writes_become_durable_as_the_store_acknowledges_them_in_order() -> None:
    log, room = room_log()
    log.restore(StoredRoom())
    writer = Replica("w")
    write(room, log, writer, "a")
    room.scheduler.now += 1.5
    first = room.committer.taken[0]()  # the store takes entry 1 into a transaction...
    at_first = room.replica.version()
    write(room, log, writer, "b")  # ...while entry 2 comes
    room.scheduler.now += 1.0
    first()  # entry 1 committed: announced as of when it was taken
    assert room.committer.calls[-1] == ("durable", at_first)
    assert not log.fully_durable and not log.own_durable.is_set()
    second = room.committer.taken[1]()
    second()
    assert log.fully_durable and log.own_durable.is_set()
    assert room.committer.calls[-1] == ("durable", room.replica.version())
    # Receive-to-durable: from each transaction's oldest unstored update to its commit.
    assert metric(room, "crdtdoc_receive_to_durable_seconds_count") == 2
    assert metric(room, "crdtdoc_receive_to_durable_seconds_sum") == pytest.approx(2.5 + 1.0)


def test_an_update_from_the_shared_log_is_only_acknowledged() -> None:
    log, room = room_log(shared=True)
    log.restore(StoredRoom())
    log.committed(b"stored elsewhere", from_log=True)
    assert room.committer.calls == [("touch", "r")]
    room.committer.taken[0]()()
    assert log.fully_durable and log.size_bytes == len(b"stored elsewhere")
    assert metric(room, "crdtdoc_receive_to_durable_seconds_count") == 0  # nothing waited


def test_the_log_is_compacted_at_its_thresholds() -> None:
    log, room = room_log(compact_log_updates=3)
    log.compact()  # nothing logged: nothing to fold
    log.restore(StoredRoom(updates=[b"u1"], last_seq=1))  # stored entries count too
    writer = Replica("w")
    write(room, log, writer, "a")
    log.compact_if_due()
    assert not [c for c in room.committer.calls if c[0] == "compact"]
    write(room, log, writer, "b")
    log.compact_if_due()
    [compacted] = [c for c in room.committer.calls if c[0] == "compact"]
    assert compacted == ("compact", "r", 3, room.replica.encode_snapshot())
    assert log.size_bytes == len(compacted[3])
    assert metric(room, "crdtdoc_compactions_total") == 1
    write(room, log, writer, "c")  # the count starts again
    log.compact_if_due()
    assert len([c for c in room.committer.calls if c[0] == "compact"]) == 1

    by_bytes, room = room_log(compact_log_bytes=100)
    by_bytes.restore(StoredRoom())
    write(room, by_bytes, Replica("w"), "x" * 200)
    by_bytes.compact_if_due()
    assert [c[0] for c in room.committer.calls].count("compact") == 1


def test_a_shared_log_is_compacted_in_the_background_up_to_what_was_applied() -> None:
    log, room = room_log(shared=True)
    log.restore(StoredRoom(snapshot_seq=2, updates=[b"u3", b"u4"], last_seq=4))
    store = room.cluster.store
    log.compact()
    log.compact()  # already under way: not twice
    assert len(room.scheduler.spawned) == 2 - 1
    room.scheduler.run_spawned()
    assert store.compacted == [4] and log.size_bytes == len(room.replica.encode_snapshot())
    assert metric(room, "crdtdoc_compactions_total") == 1
    log.compact()  # nothing new since: no work
    assert room.scheduler.spawned == []

    store.answer = False  # another hub compacted first: counted as done, not by us
    log.committed(b"x", from_log=True)
    log.apply_stored(5, Replica("w").encode_update())
    log.compact()
    room.scheduler.run_spawned()
    assert store.compacted == [4, 5] and metric(room, "crdtdoc_compactions_total") == 1
    log.committed(b"y", from_log=True)
    log.compact()
    room.scheduler.run_spawned()  # nothing applied past the last snapshot: retried later
    assert store.compacted == [4, 5]
    assert [delay for delay, _ in room.scheduler.later] == [RETRY_COMPACTION_SECONDS]
    log.apply_stored(6, Replica("v").encode_update())  # the log moves on meanwhile
    room.scheduler.later[0][1]()  # the retry compacts again
    room.scheduler.run_spawned()
    assert store.compacted == [4, 5, 6]


def test_a_shared_compaction_waits_for_log_entries_held_back_and_survives_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log, room = room_log(shared=True)
    log.restore(StoredRoom())
    store = room.cluster.store
    writer = Replica("w")
    writer.document("d").append("a")
    missing = writer.encode_update()
    before = writer.version()
    writer.document("d").append("b")
    log.apply_stored(1, Replica("other").encode_update())
    assert log.apply_stored(2, writer.encode_update(before))  # waits for `missing`
    assert room.replica.pending_of(FROM_LOG)[0] == 1
    log.committed(b"x", from_log=True)
    log.compact()
    room.scheduler.run_spawned()
    assert store.compacted == [] and len(room.scheduler.later) == 1
    log.apply_stored(3, missing)
    store.answer = StorageError("the database went away")
    with caplog.at_level(logging.WARNING, "crdtdoc.hub.room"):
        log.compact()
        room.scheduler.run_spawned()
    assert "compaction failed" in caplog.text and store.compacted == []
    store.answer = True
    log.compact()  # not stuck as "under way"
    room.scheduler.run_spawned()
    assert store.compacted == [3]


def test_entries_of_the_shared_log_are_applied_once_in_any_order() -> None:
    log, room = room_log(shared=True)
    log.restore(StoredRoom(last_seq=1))
    writers = [Replica(f"w{i}") for i in range(3)]
    for i, w in enumerate(writers):
        w.document(f"d{i}").append(f"{i}")
    assert log.apply_stored(3, writers[1].encode_update())
    assert (log.seqs.applied, log.seqs.ahead) == (1, {3})
    assert log.apply_stored(2, writers[0].encode_update())
    assert (log.seqs.applied, log.seqs.ahead) == (3, set())
    assert room.replica.document("d0").read() == "0" and room.replica.document("d1").read() == "1"
    assert log.apply_stored(1, b"junk already applied")  # ignored: position 1 was restored
    assert log.apply_stored(3, b"junk applied meanwhile")
    assert not log.apply_stored(4, b"\x01\x02junk")  # damaged: must be read from the log
    assert log.seqs.applied == 3 and not log.seqs.ahead


def test_a_catch_up_read_applies_a_newer_snapshot_then_its_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log, room = room_log(shared=True)
    log.restore(StoredRoom(last_seq=2))
    old, new, later = Replica("old"), Replica("new"), Replica("later")
    old.document("d").append("old")
    new.document("d").append("new")
    later.document("e").append("later")
    covered = Fetched(
        snapshot=b"junk, never read", snapshot_seq=2, entries=[(3, old.encode_update())]
    )
    log.apply_fetched(covered)  # a snapshot this hub is past is skipped, not parsed
    assert log.seqs.applied == 3 and room.replica.document("d").read() == "old"

    with caplog.at_level(logging.ERROR, "crdtdoc.hub.room"):
        log.apply_fetched(Fetched(snapshot=b"\x05junk", snapshot_seq=9, entries=[(10, b"")]))
    assert "a stored snapshot was refused" in caplog.text
    assert log.seqs.applied == 3  # neither the snapshot nor what follows it was taken

    snapshot = Fetched(
        snapshot=new.encode_snapshot(), snapshot_seq=9, entries=[(10, later.encode_update())]
    )
    log.apply_fetched(snapshot)
    assert log.seqs.applied == 10
    assert room.replica.document("e").read() == "later"
    assert "new" in room.replica.document("d").read()
    log.committed(b"x", from_log=True)
    log.compact()
    room.scheduler.run_spawned()
    assert room.cluster.store.compacted == [10]

"""Durable acknowledgements (`crdtdoc.server.durability`): protocol 2 clients are told deltas,
encoded once per announcement, that stay small however many deletions the room holds and always join
into the exact durable version, also for a client welcomed while an announcement waited, across
store errors, after a resync and (with a real hub) across a reconnect; protocol 1 clients are
still told the full version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import cast

import crdtdoc
from crdtdoc import Replica
from crdtdoc.protocol.extension import (
    Durable,
    DurableTracker,
    Hello,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import Extension, SyncUpdate, decode_message, encode_message
from crdtdoc.server.durability import DURABLE_INTERVAL
from crdtdoc.server.peer import Peer
from crdtdoc.server.room import Room
from tests.server.test_room import ManualScheduler, new_peer, new_room
from tests.support.aio import run
from tests.support.hubs import running_hub


def _told(peer: Peer) -> list[Welcome | Durable]:
    """The welcome and durable messages queued for `peer` (the queue is emptied, as if sent)."""
    told: list[Welcome | Durable] = []
    for data in peer._queue:
        message = decode_message(data)
        if isinstance(message, Extension):
            ext = decode_extension(message)
            if isinstance(ext, (Welcome, Durable)):
                told.append(ext)
    peer._queue.clear()
    peer._queued_bytes = 0
    return told


def _durable_bytes(peer: Peer) -> list[int]:
    """Sizes of the durable messages queued for `peer`, in order (the queue is left as is)."""
    sizes = []
    for data in peer._queue:
        message = decode_message(data)
        if isinstance(message, Extension) and isinstance(decode_extension(message), Durable):
            sizes.append(len(data))
    return sizes


def _extensions(messages: list[bytes]) -> list[object]:
    """The extension messages among `messages`, decoded."""
    decoded = (decode_message(data) for data in messages)
    return [decode_extension(m) for m in decoded if isinstance(m, Extension)]


def _fold(told: list[Welcome | Durable], tracker: DurableTracker | None = None) -> DurableTracker:
    tracker = tracker or DurableTracker()
    for message in told:
        tracker.receive(message)
    return tracker


class _Writer:
    """A client typing a text and deleting every third character of it, one at a time, from
    the end backwards (so no two deletions merge into one range)."""

    def __init__(self, room: Room, peer: Peer, length: int) -> None:
        self.room, self.peer, self.replica = room, peer, Replica("typist")
        self._next = 3 * (length // 3) - 1
        self._send(lambda: self.replica.document("d").insert(0, "x" * length))

    def _send(self, edit: Callable[[], None]) -> None:
        before = self.replica.version()
        edit()
        update = encode_message(SyncUpdate(self.replica.encode_update(before)))
        self.room.receive(self.peer, update)

    def delete_one(self) -> None:
        at, self._next = self._next, self._next - 3
        self._send(lambda: self.replica.document("d").delete(at, 1))


def _hello(room: Room, peer: Peer, agent: str, protocol: int) -> None:
    room.receive(peer, encode_message(encode_extension(Hello(agent, protocol))))


def _commit(room: Room) -> None:
    """The store took the room's writes and committed them (as the group committer does)."""
    room.taken()()


def _scheduler(room: Room) -> ManualScheduler:
    return cast(ManualScheduler, room.scheduler)


def _later(room: Room, seconds: float) -> None:
    """Moves the room's clock on and runs what was due (an announcement held back)."""
    scheduler = _scheduler(room)
    scheduler.now += seconds
    due, scheduler.later = scheduler.later, []
    for callback in due:
        callback()


def test_acknowledgements_to_protocol_2_clients_stay_small_as_deletions_accumulate(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path)
    typist, new, old = (new_peer(config, None, None) for _ in range(3))
    for peer in (typist, new, old):
        room.join(peer)
    _hello(room, new, "new", 2)
    _hello(room, old, "old", 1)
    writer = _Writer(room, typist, 2000)
    _commit(room)
    new_told, old_told = _told(new), _told(old)
    for _ in range(400):
        writer.delete_one()
        _commit(room)
        _later(room, 1.0)  # each commit told at once
        new_sizes, old_sizes = _durable_bytes(new), _durable_bytes(old)
        new_told += _told(new)
        old_told += _told(old)
    assert room.durable.deleted.range_count() >= 400  # (and the log entries replaced)
    assert isinstance(new_told[0], Welcome) and new_told[0].protocol == 2
    assert isinstance(old_told[0], Welcome) and old_told[0].protocol == 1
    assert all(isinstance(m, Durable) and m.delta for m in new_told[1:])
    assert all(isinstance(m, Durable) and not m.delta for m in old_told[1:])
    assert new_sizes[-1] * 20 < old_sizes[-1], (new_sizes, old_sizes)  # the 400th ack
    assert _fold(new_told).version == room.durable
    assert _fold(old_told).version == room.durable
    last = old_told[-1]
    assert isinstance(last, Durable) and last.version == room.durable  # as before: in full


def test_a_client_welcomed_while_an_acknowledgement_waits_misses_nothing(tmp_path: Path) -> None:
    """The announcer holds an announcement back for its interval; a client welcomed meanwhile
    gets the newest durable version in its welcome, then the held-back delta, computed against
    an older announcement: together, exactly the durable version. Store errors in between are
    told as deltas too."""
    room, config = new_room(tmp_path)
    typist, first, late = (new_peer(config, None, None) for _ in range(3))
    for peer in (typist, first):
        room.join(peer)
    _hello(room, first, "first", 2)
    writer = _Writer(room, typist, 300)
    _commit(room)  # told at once
    writer.delete_one()
    _commit(room)  # within the interval: held back
    assert _scheduler(room).later, "the second announcement was not held back"
    room.join(late)
    _hello(room, late, "late", 2)
    writer.delete_one()
    room.announcer.store_failing("database or disk is full")
    _commit(room)
    room.announcer.store_failing(None)
    writer.delete_one()
    _commit(room)
    _later(room, DURABLE_INTERVAL)
    first_told, late_told = _told(first), _told(late)
    assert all(m.delta for m in first_told[1:] + late_told[1:] if isinstance(m, Durable))
    assert any(isinstance(m, Durable) and m.store_error for m in late_told)
    assert _fold(first_told).version == room.durable
    assert _fold(late_told).version == room.durable
    writer.delete_one()  # and from here on, one delta for both
    _commit(room)
    _later(room, 1.0)
    assert _fold(_told(first), _fold(first_told)).version == room.durable
    assert _fold(_told(late), _fold(late_told)).version == room.durable


def test_a_resynced_client_is_told_the_durable_version_it_may_have_lost(tmp_path: Path) -> None:
    """A dropped queue may have held deltas: the resync tells what became durable since the
    client's queue last drained (it held everything told until then), or the full version
    when that is not known."""
    room, config = new_room(tmp_path, send_queue_messages=4)
    typist, lagger = new_peer(config, None, None), new_peer(config, None, None)
    room.join(typist)
    room.join(lagger)
    _hello(room, lagger, "lagger", 2)
    writer = _Writer(room, typist, 300)
    _commit(room)
    resync = _extensions(room._resync_messages(lagger))
    assert resync[-1] == Durable(room.durable)  # what it holds is unknown: the full version
    held = _fold(_told(lagger))
    room._drained(lagger)  # its writer sent everything
    for _ in range(10):  # the queue overflows: deltas lost
        writer.delete_one()
        _commit(room)
        _later(room, 1.0)
    assert lagger.resyncs >= 1
    told = _extensions(room._resync_messages(lagger))
    assert isinstance(told[-1], Durable) and told[-1].delta
    assert _fold([told[-1]], held).version == room.durable


def test_a_client_knows_what_is_durable_across_many_deltas_and_a_reconnect(
    tmp_path: Path,
) -> None:
    """With a real hub: `flush` and `is_durable` answer from the joined deltas, the durable
    version a client holds is the hub's exactly, and after the link drops the welcome starts it
    over; the hub's acknowledgements were deltas, a few dozen bytes each."""

    async def body() -> None:
        async with (
            running_hub(tmp_path / "hub.db") as hub,
            crdtdoc.connect(f"{hub.url}/room", agent="writer") as writer,
        ):
            text = writer.document("d")
            text.insert(0, "y" * 3000)
            await writer.flush(timeout=10)
            room = hub.rooms["room"]
            (peer,) = room.peers
            assert peer.durable_deltas
            sizes: list[int] = []  # what the hub sent the writer: acknowledgements
            peer.on_sent = lambda count, size: sizes.append(size)
            for i in range(60):
                text.delete(3000 - 3 * (i + 1), 1)
                if i % 3 == 0:
                    durable = await writer.flush(timeout=10)
                    assert writer.version() <= durable and writer.is_durable()
            await writer.flush(timeout=10)
            assert writer.durable == room.durable
            full = len(encode_message(encode_extension(Durable(room.durable))))
            assert len(sizes) >= 20 and max(sizes) < full, (sizes, full)
            peer.close_soon(1012, "restart")  # the link drops; the client reconnects
            for _ in range(200):
                if writer.connected and room.peers and next(iter(room.peers)) is not peer:
                    break
                await asyncio.sleep(0.02)
            for i in range(60, 90):
                text.delete(3000 - 3 * (i + 1), 1)
            durable = await writer.flush(timeout=10)
            assert writer.version() <= durable and writer.is_durable()
            room = hub.rooms["room"]
            assert writer.durable == room.durable
            assert room.durable.deleted.range_count() >= 90  # (and the log entries replaced)

    run(body(), timeout=60)

"""Updates waiting in a room's causal buffer: each sender has its own share, what waits too long
is dropped and its sender asked to sync again, and the per-update cost does not grow with what
waits (issue 16 a, b, c)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from pycrdt import Doc, Text

from crdtdoc import Replica
from crdtdoc.idset import IdSet
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, decode_message, encode_message
from crdtdoc.server.peer import Peer
from crdtdoc.server.room import Room
from crdtdoc.tokens import Grant
from crdtdoc.updates import deletes_only
from tests.server.test_room import ManualScheduler, new_peer, new_room
from tests.support.builders import orphans

CAP = 50


def sent(peer: Peer) -> list[object]:
    return [decode_message(m) for m in peer._queue]


def run_scheduled(room: Room) -> None:
    scheduler = cast(ManualScheduler, room.scheduler)
    due, scheduler.later = scheduler.later, []
    for callback in due:
        callback()


def test_one_senders_backlog_does_not_take_the_buffer_from_others(tmp_path: Path) -> None:
    room, config = new_room(tmp_path, max_waiting_updates=CAP)
    mallory = new_peer(config, Grant("mallory", "*"), "mallory")
    alice = new_peer(config, Grant("alice", "*"), "alice")
    room.join(mallory)
    room.join(alice)
    mallory._queue.clear()
    for update in orphans(CAP * 3, client=666):
        room.receive(mallory, encode_message(SyncUpdate(update)))
    assert room.replica.pending_of("mallory")[0] == CAP
    assert any(isinstance(m, SyncStep1) for m in sent(mallory))  # asked for what it lacks
    # alice's own out-of-order pair still waits, then applies
    writer = Replica("alice")
    writer.document("d").insert(0, "first ")
    first = writer.encode_update()
    before = writer.version()
    writer.document("d").insert(6, "second")
    second = writer.encode_update(before)
    room.receive(alice, encode_message(SyncUpdate(second)))
    assert room.replica.pending_of("alice")[0] == 1
    room.receive(alice, encode_message(SyncUpdate(first)))
    assert room.replica.document("d").read() == "first second"
    assert room.replica.pending_of("alice") == (0, 0)


def test_what_waits_too_long_is_dropped_and_its_sender_asked_to_sync(tmp_path: Path) -> None:
    room, config = new_room(tmp_path, max_waiting_updates=CAP, max_waiting_seconds=30.0)
    mallory = new_peer(config, Grant("mallory", "*"), "mallory")
    room.join(mallory)
    for update in orphans(10, client=666):
        room.receive(mallory, encode_message(SyncUpdate(update)))
    assert room.replica.pending_count == 10
    mallory._queue.clear()
    scheduler = cast(ManualScheduler, room.scheduler)
    scheduler.now += 10
    run_scheduled(room)  # too early: kept, and looked at again later
    assert room.replica.pending_count == 10 and scheduler.later
    scheduler.now += 25
    run_scheduled(room)
    assert room.replica.pending_count == 0 and room.replica.pending_of("mallory") == (0, 0)
    assert [type(m) for m in sent(mallory)] == [SyncStep1]
    assert not scheduler.later  # nothing waits: no more sweeps


def test_deletions_of_ids_nobody_has_are_bounded_per_connection(tmp_path: Path) -> None:
    room, config = new_room(tmp_path, max_waiting_updates=CAP)  # no tokens: per connection
    mallory, honest = new_peer(config, None, None), new_peer(config, None, None)
    room.join(mallory)
    room.join(honest)
    for i in range(CAP * 2):
        nowhere = IdSet()
        nowhere.add(10_000 + i, 0, 5)
        room.receive(mallory, encode_message(SyncUpdate(deletes_only(nowhere))))
    assert room.replica.pending_of(mallory.rate_key)[0] == CAP
    writer = Replica("w")
    writer.document("d").insert(0, "still served")
    room.receive(honest, encode_message(SyncUpdate(writer.encode_update())))
    assert room.replica.document("d").read() == "still served"
    cast(ManualScheduler, room.scheduler).now += 100
    run_scheduled(room)
    assert room.replica.pending_count == 0


def test_an_update_costs_the_same_however_much_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resync check looks at the update just received, never at the whole buffer."""
    room, config = new_room(tmp_path, max_waiting_updates=10_000)
    mallory = new_peer(config, Grant("mallory", "*"), "mallory")
    room.join(mallory)

    def walk(*_: Any) -> None:
        raise AssertionError("pending() walks the whole buffer")

    monkeypatch.setattr(Replica, "pending", walk)
    for update in orphans(300, client=666):
        room.receive(mallory, encode_message(SyncUpdate(update)))
    assert room.replica.pending_count == 300


def test_large_waiting_updates_are_bounded_by_structs_and_memory(tmp_path: Path) -> None:
    """Issue 16 c: megabytes of tiny structs waiting on a clock that never comes once took
    ~70 MB each; a sender now holds at most its share, and applying it all at once stays short."""
    room, config = new_room(tmp_path, max_waiting_structs=10_000)
    mallory = new_peer(config, Grant("mallory", "*"), "mallory")
    room.join(mallory)
    doc = Doc(client_id=666)
    text = doc.get("t", type=Text)
    text.insert(0, "never sent")
    for _ in range(6):
        before = doc.get_state()
        with doc.transaction():
            for _ in range(4_000):
                text.insert(0, "x")
        mallory._queue.clear()
        room.receive(mallory, encode_message(SyncUpdate(doc.get_update(before))))
    entries, charged = room.replica.pending_of("mallory")
    assert entries == 2 and charged < config.max_waiting_bytes  # 8,000 of 10,000 structs
    assert any(isinstance(m, SyncStep1) for m in sent(mallory))  # the rest: asked to resync


def test_a_senders_share_counts_over_all_rooms_and_ends_when_it_leaves(tmp_path: Path) -> None:
    """Review finding: parking waiting data in room after room, and leaving, once held
    byte rate x expiry of memory. The share is the identity's over the hub's rooms, and a
    sender's waiting data goes when its connection does (it resends what it has on rejoin)."""
    rooms = []
    for i in range(3):
        room, config = new_room(tmp_path / str(i), max_waiting_updates=CAP)
        if rooms:  # the hub's rooms share one set of per-identity budgets
            room._limits = rooms[0]._limits
            room.replica.share_pending(room._limits.waiting)
        rooms.append(room)
    peers = []
    for i, room in enumerate(rooms):
        mallory = new_peer(config, Grant("mallory", "*"), "mallory")
        room.join(mallory)
        peers.append(mallory)
        for update in orphans(CAP, client=600 + i):
            room.receive(mallory, encode_message(SyncUpdate(update)))
    assert sum(room.replica.pending_count for room in rooms) == CAP  # not CAP in each room
    assert rooms[0].replica.pending_of("mallory")[0] == CAP
    rooms[0].leave(peers[0])
    assert rooms[0].replica.pending_of("mallory") == (0, 0)
    assert not rooms[0]._limits.waiting  # nothing is held for anyone any more

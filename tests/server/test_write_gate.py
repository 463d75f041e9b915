"""`WriteGate` (`crdtdoc.server.write_gate`), the room's authorization step, on a replica and
peers of its own: read-only tokens, the room's size, client ids bound to the identity that
introduced them, and what the gate learns of a room it loads."""

from __future__ import annotations

import pytest

from crdtdoc import Replica
from crdtdoc.errors import Forbidden, RoomFull
from crdtdoc.server.config import HubConfig
from crdtdoc.server.write_gate import WriteGate
from crdtdoc.tokens import Grant
from tests.server.test_room import new_peer

CONFIG = HubConfig()


def edit(agent: str, text: str = "hello", client_id: int | None = None) -> tuple[Replica, bytes]:
    r = Replica(agent, client_id=client_id)
    r.document("d").insert(0, text)
    return r, r.encode_update()


def test_a_read_only_token_may_sync_what_the_room_has_but_write_nothing() -> None:
    room = Replica("room")
    gate = WriteGate("r", room, max_room_bytes=10**6)
    alice = new_peer(CONFIG, Grant("alice", "*"), "alice")
    reader = new_peer(CONFIG, Grant("reader", "*", read_only=True), "reader")
    _, update = edit("alice")
    gate.authorize(alice, update, 0)
    room.apply_update(update, origin=alice)
    gate.authorize(reader, update, len(update))  # nothing new: passes
    _, mine = edit("reader", "mine")
    with pytest.raises(Forbidden, match="read-only"):
        gate.authorize(reader, mine, len(update))


def test_a_room_does_not_grow_past_its_limit() -> None:
    gate = WriteGate("r", Replica("room"), max_room_bytes=100)
    peer = new_peer(CONFIG, None, None)
    _, small = edit("alice", "x")
    gate.authorize(peer, small, 0)
    _, large = edit("bob", "y" * 200)
    with pytest.raises(RoomFull, match="would exceed 100 bytes"):
        gate.authorize(peer, large, 0)
    with pytest.raises(RoomFull):
        gate.authorize(peer, small, 100 - len(small) + 1)


def test_a_client_id_belongs_to_the_identity_that_introduced_it() -> None:
    room = Replica("room")
    gate = WriteGate("r", room, max_room_bytes=10**6)
    alice = new_peer(CONFIG, Grant("alice", "*"), "alice")
    mallory = new_peer(CONFIG, Grant("mallory", "*"), "mallory")
    writer, first = edit("alice", "one", client_id=4242)
    room.apply_update(first, origin=alice)  # the judge hook binds 4242 to alice
    assert gate.owners[4242] == "alice"
    before = writer.version()
    writer.document("d").insert(0, "two ")
    more = writer.encode_update(before)
    with pytest.raises(Forbidden, match="client id 4242 belongs to alice"):
        gate.authorize(mallory, more, 0)
    gate.authorize(alice, more, 0)


def test_a_loaded_room_binds_the_registered_client_ids_to_their_agents() -> None:
    stored = Replica("alice", client_id=7)
    stored.document("d").insert(0, "kept")
    room = Replica("room")
    room.apply_update(stored.encode_update(), trusted=True)
    gate = WriteGate("r", room, max_room_bytes=10**6)
    gate.restore()
    assert gate.owners[7] == "alice"
    assert gate.facts().kinds == {"d": "document"}

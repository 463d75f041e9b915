"""Room presence (`crdtdoc.server.presence`) without sockets: what a connection may change, what the
room keeps, and how a reconnecting client reappears."""

from __future__ import annotations

from pathlib import Path

from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from crdtdoc.protocol.messages import Awareness, decode_message
from crdtdoc.server.peer import Peer
from tests.server.test_room import new_peer, new_room


def presence(*entries: tuple[int, int, str]) -> bytes:
    return encode_awareness([AwarenessEntry(c, k, s) for c, k, s in entries])


def received(peer: Peer) -> list[AwarenessEntry]:
    """Every awareness entry queued for `peer`."""
    out: list[AwarenessEntry] = []
    for data in peer._queue:
        message = decode_message(data)
        if isinstance(message, Awareness):
            out.extend(decode_awareness(message.data, max_state_bytes=1 << 16))
    return out


def test_a_client_back_after_a_blip_shows_at_once(tmp_path: Path) -> None:
    """The room once kept the 'left' entry at clock + 1, so the client's own next states (same
    clock, or that clock) were dropped as stale for up to two renewals (~30 s)."""
    room, config = new_room(tmp_path)
    watcher, first = new_peer(config, None, None), new_peer(config, None, None)
    room.join(watcher)
    room.join(first)
    room.presence.receive(first, presence((7, 3, '{"user":"ann"}')))
    room.leave(first)  # the link dropped
    again = new_peer(config, None, None)
    room.join(again)
    room.presence.receive(again, presence((7, 3, '{"user":"ann"}')))  # same clock, as Yjs does
    states = [(e.client, e.clock, e.removed) for e in received(watcher)]
    assert states == [(7, 3, False), (7, 4, True), (7, 3, False)]
    assert {e.client for e in room.presence.present()} == {7}


def test_removals_of_clients_nobody_holds_are_neither_kept_nor_relayed(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    watcher, flooder = new_peer(config, None, None), new_peer(config, None, None)
    room.join(watcher)
    room.join(flooder)
    room.presence.receive(flooder, presence(*((c, 1, "null") for c in range(1024))))
    assert room.presence.entries == {} and room.presence.seen == {}
    assert received(watcher) == []


def test_a_connection_changes_only_its_own_presence(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    owner, other = new_peer(config, None, None), new_peer(config, None, None)
    room.join(owner)
    room.join(other)
    room.presence.receive(owner, presence((5, 1, '{"user":"o"}')))
    room.presence.receive(other, presence((5, 9, "null"), (5, 10, '{"user":"x"}')))
    assert room.presence.entries[5].state == '{"user":"o"}'
    room.leave(owner)
    assert room.presence.entries == {}  # forgotten once it ended

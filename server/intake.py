"""What a room needs before a peer's message reaches its sync session: the message read
(decoded, its update parsed and cut into slices, possibly in the hub's parser thread), and the
rules of the room's causal buffer for peers' data (each sender's share, who is charged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from crdtdoc.protocol.messages import Message, SyncStep2, SyncUpdate, decode_message
from crdtdoc.replica import ReplicaLimits
from crdtdoc.server.config import HubConfig
from crdtdoc.server.peer import Peer
from crdtdoc.slicing import slice_update
from crdtdoc.updates import ParsedUpdate, parse_update


@dataclass(frozen=True)
class Incoming:
    """A message as read from a peer: decoded, and for an update parsed and cut into slices."""

    message: Message
    parsed: ParsedUpdate | None = None
    slices: list[tuple[bytes, ParsedUpdate]] | None = None
    cut_on: Mapping[int, int] | None = None  # the state vector the slices were cut against
    known: bool = False  # an update that brings the room nothing (`Replica.holds`): not parsed


def read_message(
    data: bytes, state: Mapping[int, int], holds: Callable[[bytes], bool] | None = None
) -> Incoming:
    """Decodes a peer's message and parses the update it carries, cut into slices a room can
    apply one per turn of the event loop (`crdtdoc.slicing`). Touches no room: the hub runs it in
    a worker thread for a large message (`state`: a copy of the room's state vector). `holds`,
    on the room's own thread only, tells an update that brings the room nothing (an up-to-date
    peer's sync step 2) from its bytes: that one is not parsed."""
    message = decode_message(data)
    if isinstance(message, (SyncStep2, SyncUpdate)):
        if holds is not None and holds(message.update):
            return Incoming(message, known=True)
        parsed = parse_update(message.update, details=True)
        slices = slice_update(message.update, parsed, state)
        return Incoming(message, parsed, slices, state)
    return Incoming(message)


def hub_limits(config: HubConfig) -> ReplicaLimits:
    """A room's causal-buffer bounds: each sender's share from the config, and the whole."""
    return ReplicaLimits(
        max_pending_updates=10_000,
        max_pending_bytes=64 * 1024 * 1024,
        max_pending_updates_per_origin=config.max_waiting_updates,
        max_pending_bytes_per_origin=config.max_waiting_bytes,
        max_pending_structs_per_origin=config.max_waiting_structs,
    )


def pending_holder(origin: object) -> object:
    """Whose share a waiting update is charged to: its sender's identity (or connection)."""
    return origin.rate_key if isinstance(origin, Peer) else origin

"""`SyncSession`: one replica's side of one sync link, with no I/O of its own.

Feed it the bytes that arrive (`receive`) and send the bytes it returns; call `open` when the link
comes up and `local_update` for each local change. The hub, the websocket client and the simulated
network all drive replicas through this one state machine.
"""

from __future__ import annotations

from crdtdoc.errors import PendingLimitExceeded
from crdtdoc.idset import IdSet
from crdtdoc.protocol.messages import (
    Message,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.replica import Replica
from crdtdoc.slicing import slice_update
from crdtdoc.updates import ParsedUpdate, decode_state_vector, parse_update


class SyncSession:
    """Drives `replica` through the y-protocols sync exchange with one peer."""

    def __init__(
        self,
        replica: Replica,
        origin: object = None,
        trusted: bool = False,
        max_message_bytes: int | None = None,
    ) -> None:
        self.replica = replica
        # The largest message the peer takes (a hub says so in its welcome): a step 2 past it
        # is sent in slices, each an update of its own, or the peer would close the link over
        # it on every reconnect (an offline agent's edits would never arrive).
        self.max_message_bytes = max_message_bytes
        self.origin = origin  # the tag the replica's listeners see on updates from this peer
        # A hub is the authority on what its rooms hold (it judged every write, and may hold
        # data stored under older rules): its clients skip the semantic gate, not the parser.
        self.trusted = trusted
        self.synced = False  # True once the peer's step 2 has arrived
        self._requested: IdSet | None = None  # what our last resync request was for

    def open(self) -> list[bytes]:
        """Messages to send when the link comes up: our state vector (sync step 1)."""
        self.synced = False
        return [self.step1()]

    def step1(self) -> bytes:
        return encode_message(SyncStep1(self.replica.state_vector()))

    def local_update(self, update: bytes) -> bytes:
        """The message carrying a local change to the peer."""
        return encode_message(SyncUpdate(update))

    def receive(self, data: bytes) -> list[bytes]:
        """Handles one message from the peer; returns the replies to send.

        Raises `InvalidMessage` / `InvalidUpdate` for bad input (close the link on those).
        """
        return self.handle(decode_message(data))

    def handle(self, message: Message, parsed: ParsedUpdate | None = None) -> list[bytes]:
        """Handles one decoded message. Only sync messages concern the session; awareness and
        extension messages belong to whoever drives it, and are ignored here."""
        if isinstance(message, SyncStep1):
            return self._step2(self.replica.encode_update(message.state_vector), message)
        if isinstance(message, (SyncStep2, SyncUpdate)):
            try:
                waits = self.replica.apply_update(
                    message.update, parsed=parsed, origin=self.origin, trusted=self.trusted
                )
            except PendingLimitExceeded:
                return [self.step1()]
            if isinstance(message, SyncStep2):
                self.synced = True
            return self._resync_if_stuck(waits)
        return []

    def _step2(self, update: bytes, asked: SyncStep1) -> list[bytes]:
        """The answer to a step 1: one step 2, or, past `max_message_bytes`, a step 2 and
        updates, each under the limit where the structs allow (one struct larger than the
        limit cannot be cut: it goes whole). Applied in order they do what the whole does."""
        limit = self.max_message_bytes
        if limit is None or len(update) + 16 <= limit:
            return [encode_message(SyncStep2(update))]
        parsed = parse_update(update, details=True)
        state = decode_state_vector(asked.state_vector)
        per_slice = max(1, parsed.count * (limit // 2) // len(update))
        slices = [data for data, _ in slice_update(update, parsed, state, per_slice)]
        return [
            encode_message(SyncStep2(data) if i == 0 else SyncUpdate(data))
            for i, data in enumerate(slices)
        ]

    def _resync_if_stuck(self, waits: IdSet) -> list[bytes]:
        """Asks the peer for what the update just received waits for, once per gap (no request
        storms): only this update's gap is looked at, so the cost does not grow with what else
        waits in the buffer."""
        if not waits:
            return []
        if self._requested is not None and waits.issubset(self._requested):
            return []
        self._requested = waits
        return [self.step1()]

"""`Peer`: one websocket connection in one room, with a bounded send queue and its own writer.

The room never awaits a peer: it enqueues messages (already encoded, shared by every peer) and
moves on. A peer whose queue overflows has the queue dropped and is resynced with one message
computed when its writer gets to it (what the room holds past what the peer was surely sent,
`Delivered`, which covers everything dropped); a peer whose single send blocks longer than
`send_timeout` is not reading and is disconnected. So a slow or stuck client costs the hub a
bounded amount of memory and never delays the others. What waits when the writer gets to it
leaves with each run of sync updates merged into one message (`crdtdoc.protocol.coalesce`):
under a burst, the hub pays one send per turn of a peer's writer, not one per update.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from crdtdoc.protocol.coalesce import coalesce
from crdtdoc.server.config import HubConfig
from crdtdoc.tokens import Grant
from crdtdoc.updates import decode_state_vector
from crdtdoc.versions import Version

log = logging.getLogger("crdtdoc.hub.peer")

MAX_CLOSE_REASON = 123  # bytes, per RFC 6455
MAX_ANNOUNCED_BYTES = 1 << 16
"""A sync step 1's state vector is noted (`Peer.announce`) up to this size."""
OFFLINE_SECONDS = 10.0
"""How long after a link opens its offline work may arrive (it comes with the link's first sync
step 2, at once)."""
CLOSE_TIMEOUT = 1.0
"""Seconds to wait for a closing handshake with a peer that stopped reading before dropping it."""


def close_reason(text: str) -> str:
    """`text` cut to what a websocket close frame can carry (123 UTF-8 bytes)."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a peer surely holds, as the room noted it the last time the peer's queue drained
    (every message queued until then had been written to its connection, none dropped)."""

    state: Mapping[int, int] | None
    """The room's state vector then: the peer was sent (or wrote) every struct below it. None
    until the room had queued it everything it held (the answer to its sync step 1, a resync):
    before that, a drained queue says nothing about the room's older content."""
    durable: Version | None
    """The durable version it held then (the room's last announcement): a protocol 2 client
    joins deltas into what it was told. None for a client told full versions."""


def _write_now(ws: ServerConnection, message: bytes) -> bool:
    """Writes `message` at once when the connection is open and its socket keeps up (nothing
    waits in the transport's buffer): what `ws.send` does, without the context manager and
    awaits around it, which cost more than the write itself for the hub's small messages.
    False otherwise: then `ws.send` waits for the socket, or raises that the link closed."""
    if ws.protocol.state is not State.OPEN or ws.transport.get_write_buffer_size():
        return False
    ws.protocol.send_binary(message)
    ws.send_data()
    return True


class _Flush:
    """The peers sent something during this turn of the event loop, flushed once at its end
    (one callback per turn, whatever the number of peers and messages)."""

    def __init__(self) -> None:
        self._peers: dict[Peer, None] = {}  # in the order they were first sent something
        self._loop: asyncio.AbstractEventLoop | None = None  # where the callback waits

    def add(self, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a loop that ended before its callback ran: start over
            self._peers, self._loop = {}, loop
        if not self._peers:
            loop.call_soon(self._run)
        self._peers[peer] = None

    def _run(self) -> None:
        peers, self._peers = self._peers, {}
        for peer in peers:
            peer.flush()


_FLUSH = _Flush()


class Peer:
    """A connection's presence in a room: what to send it, and what it announced."""

    def __init__(self, ws: ServerConnection, config: HubConfig, remote: str = "") -> None:
        self.ws = ws
        self.remote = remote
        self.grant: Grant | None = None  # what its token allows (None: the hub has no secret)
        self.identity: str | None = None  # the authenticated agent, when there is a token
        self.ip = remote.rsplit(":", 1)[0]
        self.told_read_only = False
        self.extensions = False  # sent crdtdoc's Hello: may receive extension messages
        self.durable_deltas = False  # said protocol 2 in its Hello: told durable deltas
        self.agent: str | None = None
        self.awareness_clients: set[int] = set()  # awareness client ids this peer published
        self.resync: Callable[[Peer], list[bytes]] | None = None  # set by the room
        self.on_sent: Callable[[int, int], None] | None = None  # told (messages, bytes) sent
        # awaited before a resync is computed (the hub waits out the identity's byte debt, so
        # a connection that keeps falling behind is resent the room at its budget's pace)
        self.before_resync: Callable[[], Awaitable[object]] | None = None
        self.resyncs = 0
        # set by the room when it has queued the peer everything it holds: from then on, a
        # drained queue means the peer was sent all of the room up to that moment
        self.whole_room_queued = False
        self.on_drained: Callable[[Peer], None] | None = None  # set by the room
        # the state vector its first sync step 1 announced: what its writes made before the
        # link connected can have seen (`crdtdoc.server.provenance`); None: not announced
        self.announced: dict[int, int] | None = None
        self._offline_until = 0.0  # monotonic time its offline work must have arrived by
        self._opened = time.monotonic()
        self._offline_told = False  # it sent a sync step 1 or step 2: no later step 1 counts
        self.delivered: Delivered | None = None  # noted by `on_drained`; None: nothing known
        self._max_messages = config.send_queue_messages
        self._max_bytes = config.send_queue_bytes
        self._send_timeout = config.send_timeout
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        # Messages a resync does not replace (replies to requests, the welcome), by identity
        # while queued; those of a dropped queue, and those sent while a resync is pending,
        # wait in `_after_resync` and go right after it, in order.
        self._kept: set[int] = set()
        self._after_resync: list[bytes] = []
        self.resynced: Delivered | None = None  # set by the room's resync: what it covers
        self._writing = False  # its writer task runs (`run_writer`)
        self._busy = False  # that task holds a batch or a resync: nothing is written past it
        self._needs_resync = False
        self._ready = asyncio.Event()
        self._closed = False
        self.last_received = time.monotonic()  # for the hub's idle check
        self._send_started: float | None = None  # for the hub's stuck-send check
        self._connection_key = f"connection:{id(self)}"  # its rate key without an identity

    @property
    def rate_key(self) -> str:
        """Whose rate this connection counts against: its identity, shared by all of that
        agent's connections, or (on a hub without tokens) the connection alone."""
        return self.identity if self.identity is not None else self._connection_key

    @property
    def queued(self) -> tuple[int, int]:
        """(messages, bytes) waiting to be sent."""
        return len(self._queue), self._queued_bytes

    def announce(self, state_vector: bytes) -> None:
        """Notes the state vector of the peer's first sync step 1 (a valid one: the room's
        session read it first): what it held when the link connected. Its offline work comes
        with its first sync step 2 (the answer to the hub's step 1), within `OFFLINE_SECONDS`
        of the link opening (`offline_state`). Only a first step 1, sent before any step 2, is
        noted, and not one too large to keep: its writes are then recorded as made while
        connected, an upper bound too."""
        told, self._offline_told = self._offline_told, True
        if told or len(state_vector) > MAX_ANNOUNCED_BYTES:
            return
        self.announced = decode_state_vector(state_vector)
        self._offline_until = self._opened + OFFLINE_SECONDS

    def synced_offline_work(self) -> None:
        """Its first sync step 2 was applied: what it writes from now on, it wrote connected."""
        self._offline_told = True
        self._offline_until = 0.0

    def offline_state(self) -> dict[int, int] | None:
        """The state vector it announced, while what it sends may still be work made before
        the link connected; None after."""
        if not self._offline_until or time.monotonic() >= self._offline_until:
            return None
        return self.announced

    def send(self, message: bytes, *, keep: bool = False) -> None:
        """Queues `message` without waiting; overflow turns into a resync, never into memory.
        `keep`: a message no resync replaces (a reply to a request, the welcome): it survives
        a dropped queue and goes right after the resync (replies are bounded by the request
        budgets, so these cannot grow without bound)."""
        if self._closed:
            return
        if self._needs_resync:  # the resync covers the room's state from now until it runs
            if keep:
                self._after_resync.append(message)
            return
        # The first message waiting does not count against the byte cap: one message alone
        # always fits (a large room's sync step 2), and the edits that follow it still queue
        # (counting it, a joiner of a room larger than the cap was sent the room twice).
        behind_first = self._queued_bytes - len(self._queue[0]) if self._queue else 0
        if self._queue and (
            len(self._queue) >= self._max_messages or behind_first + len(message) > self._max_bytes
        ):
            log.info(
                "peer not keeping up: queue dropped, resync scheduled",
                extra={"peer": self.remote, "queued": len(self._queue)},
            )
            self._after_resync.extend(m for m in self._queue if id(m) in self._kept)
            if keep:
                self._after_resync.append(message)
            self._queue.clear()
            self._kept.clear()
            self._queued_bytes = 0
            self._needs_resync = True
            self.resyncs += 1
        else:
            self._queue.append(message)
            self._queued_bytes += len(message)
            if keep:
                self._kept.add(id(message))
            if self._writing and not self._busy:  # written at the end of this turn
                _FLUSH.add(self)
                return
        self._ready.set()

    def flush(self) -> None:
        """Writes what waits at once, if the socket keeps up (`_write_now`), without waking
        the writer task: the end of a turn of the event loop (`_Flush`) does this for every
        peer sent something during it, so a paced update reaches 49 peers without 49 task
        switches, and the updates of a burst that land in one turn still leave merged. What
        the socket does not take at once is left to the writer, in order."""
        if self._closed or self._busy or self._needs_resync or not self._queue:
            return
        batch = self._take_batch()
        written = 0
        try:
            for message in batch:
                if not _write_now(self.ws, message):
                    break
                written += 1
        except Exception:  # the link failed under us: the writer finds out and stops
            written = 0
        if written < len(batch):  # the rest goes through the writer, first
            rest = batch[written:]
            self._queue.extendleft(reversed(rest))
            self._queued_bytes = sum(len(m) for m in self._queue)
            self._ready.set()
        if written:
            if self.on_sent is not None:
                self.on_sent(written, sum(len(m) for m in batch[:written]))
            if written == len(batch) and self.on_drained is not None:
                self.on_drained(self)

    def _take_batch(self) -> list[bytes]:
        """All that waits, each run of sync updates merged into one message; the queue empty."""
        batch = coalesce(self._queue)
        self._queue.clear()
        self._kept.clear()
        self._queued_bytes = 0
        return batch

    async def run_writer(self) -> None:
        """Sends queued messages until the connection closes."""
        ws = self.ws
        self._writing = True
        try:
            while True:
                self._busy = False
                await self._ready.wait()
                self._ready.clear()
                self._busy = True
                while self._queue or self._needs_resync:
                    if self._needs_resync:
                        # Computed now, so it includes everything committed up to this moment;
                        # messages queued after this point are sent normally.
                        if self.before_resync is not None:
                            await self.before_resync()
                        self._needs_resync = False
                        batch = self.resync(self) if self.resync is not None else []
                        batch += self._after_resync
                        self._after_resync = []
                    else:
                        batch = self._take_batch()
                    for message in batch:
                        if not _write_now(ws, message):
                            self._send_started = time.monotonic()
                            await ws.send(message)
                            self._send_started = None
                    if self.on_sent is not None and batch:
                        self.on_sent(len(batch), sum(len(message) for message in batch))
                    if self.resynced is not None:  # written: the next resync starts from it
                        self.delivered, self.resynced = self.resynced, None
                # Everything queued so far was written and nothing dropped since the last
                # resync: the room notes what that covers (no await between, so nothing new
                # was committed unqueued).
                if self.on_drained is not None:
                    self.on_drained(self)
        except Exception:  # the connection closed under us: the handler cleans up
            return
        finally:
            self._closed = True
            self._writing = False

    def check_stuck(self, now: float) -> bool:
        """Disconnects the peer if one send has blocked longer than `send_timeout` (it is not
        reading). Called periodically by the hub, so sends need no timer of their own."""
        started = self._send_started
        if self._closed or started is None or now - started < self._send_timeout:
            return False
        log.warning(
            "peer stopped reading: disconnected",
            extra={"peer": self.remote, "timeout": self._send_timeout},
        )
        self.close_soon(1013, "not reading messages; reconnect to resync")
        return True

    def close_soon(self, code: int, reason: str) -> None:
        """Closes the connection in the background (never blocks the room)."""
        self._closed = True
        self._queue.clear()
        self._queued_bytes = 0
        task = asyncio.get_running_loop().create_task(self._close(code, close_reason(reason)))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code, reason)
        except Exception:  # the close frame cannot get through a peer that does not read
            self.ws.transport.abort()


_background: set[asyncio.Task[None]] = set()

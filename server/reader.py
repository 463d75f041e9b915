"""`Reader`: reads one connection's messages into its room, fairly.

Each connection's messages are read in order, but an identity's connections take turns (one
message of an identity is parsed and applied at a time), the identity's debts
(`crdtdoc.server.limits`: work past its struct or byte budget) are waited out before more of its
work is parsed or applied, a large message is parsed in the hub's one parser thread, and a large
update is applied a slice per turn of the event loop (`crdtdoc.server.room`). So what one identity
sends, over however many connections, is served at its budget's pace and others are served in
between (docs/SECURITY.md, "Fair service").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from crdtdoc.errors import Forbidden, RateLimited, RemoteError, RoomFull
from crdtdoc.protocol.messages import Auth, encode_message
from crdtdoc.server.intake import read_message
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.metrics import HubMetrics
from crdtdoc.server.peer import Peer, close_reason
from crdtdoc.server.room import Room

log = logging.getLogger("crdtdoc.hub")

PARSE_BYTES_PER_STRUCT = 32
"""A large message that does not parse is charged to its sender's struct budget as one struct
per this many bytes (the parser may have read most of it before failing); one that parses is
charged what it holds (structs and deleted ranges)."""
OFF_LOOP_BYTES = 64 * 1024
"""Messages larger than this are parsed in a worker thread, so the event loop keeps serving
others meanwhile (the parser releases the interpreter to it every few milliseconds)."""


async def close_draining(ws: ServerConnection, code: int, reason: str) -> None:
    """Closes a connection while reading (and dropping) what the peer still sends: with few
    unread messages allowed (`max_queue`), a peer that sent more before our close would
    otherwise have its close frame stuck behind them until the close times out."""

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()

    reader = asyncio.get_running_loop().create_task(drain())
    try:
        await ws.close(code, reason)
    finally:
        reader.cancel()


class Reader:
    """The hub's connection reading: turns per identity, debts, the parser thread."""

    def __init__(self, rates: RateLimits, metrics: HubMetrics) -> None:
        self._rates = rates
        self.metrics = metrics
        self.closing = asyncio.Event()  # set when the hub shuts down: debts are not waited out
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # One thread parses large messages: the loop shares the interpreter with it alone.
        self._parser = ThreadPoolExecutor(1, thread_name_prefix="crdtdoc-parse")

    def close(self) -> None:
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def pay(self, ws: ServerConnection, peer: Peer) -> bool:
        """Waits out the debt of `peer`'s identity (work past its struct or byte budget), or
        yields once, so that others are served between its messages and slices. False if the
        connection closed meanwhile (a hub shutting down does not wait for debts)."""
        debt = self._rates.debt(peer.rate_key)
        if not debt:
            await asyncio.sleep(0)
            return not self.closing.is_set()
        waits = [
            asyncio.ensure_future(ws.wait_closed()),
            asyncio.ensure_future(self.closing.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=debt, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return ws.state is not State.CLOSED and not self.closing.is_set()

    async def read(self, ws: ServerConnection, room: Room, peer: Peer) -> None:
        """Reads and handles `peer`'s messages until its connection closes or is refused."""
        while True:
            try:
                data = await ws.recv()
            except ConnectionClosed as exc:
                if exc.sent is not None and exc.sent.code == 1009:  # websockets' own max_size
                    self._count_refusal(room, peer, "MessageTooBig", exc.sent.reason)
                return
            peer.last_received = time.monotonic()
            self.metrics.messages_in.inc()
            self.metrics.bytes_in.inc(len(data))
            if isinstance(data, str):
                await close_draining(ws, 1003, "y-protocols messages are binary frames")
                return
            refused: RemoteError | None = None
            closing = False
            async with self._turn(peer.rate_key):  # closes happen after: they may take a while
                try:
                    closing = not await self._handle(ws, room, peer, data)
                except RemoteError as exc:
                    refused = exc
            if closing:
                await close_draining(ws, 1001, "hub shutting down")
                return
            if refused is not None:
                await self._refuse(ws, room, peer, refused)
                return

    def _turn(self, who: str) -> asyncio.Lock:
        """The lock an identity's connections take turns with: one message of an identity is
        parsed and applied at a time, so its debts (`pay`) hold over all its connections and
        it never has more than one parsed message in memory."""
        lock = self._turns.get(who)
        if lock is None:
            lock = self._turns[who] = asyncio.Lock()
        return lock

    async def _handle(self, ws: ServerConnection, room: Room, peer: Peer, data: bytes) -> bool:
        """One message of `peer`, its identity's turn held: waits out the identity's debt (or
        yields: recv() returns at once while frames are buffered, and the writers must fan each
        update out before the next is read), parses it (off the loop if large) and hands it to
        the room, a slice per turn of the loop; what it costs is charged to the identity. False
        if the hub is closing."""
        if not await self.pay(ws, peer):
            return False
        incoming = None
        # Parsing a large update takes a while: not on the loop (unless it brings nothing)
        if len(data) > OFF_LOOP_BYTES and not room.brings_nothing(data):
            state = dict(room.replica.applied()[0])
            try:
                incoming = await asyncio.get_running_loop().run_in_executor(
                    self._parser, read_message, data, state
                )
            except RemoteError:  # what it parsed is not charged by the room: charge it here
                self._rates.structs(peer.rate_key, len(data) // PARSE_BYTES_PER_STRUCT)
                raise
        room.receive(peer, data, incoming)  # charges what the update holds
        del incoming  # the room keeps the slices still to apply, each freed once applied
        while room.step(peer):  # a large update, a slice per turn of the loop
            if not await self.pay(ws, peer):
                return False
        return True

    async def _refuse(self, ws: ServerConnection, room: Room, peer: Peer, exc: RemoteError) -> None:
        """Closes a connection whose message was refused, saying why."""
        self._count_refusal(room, peer, type(exc).__name__, str(exc))
        if isinstance(exc, (Forbidden, RateLimited, RoomFull)):
            # y-protocols' own way to say "permission denied", before the close.
            with contextlib.suppress(Exception):
                await ws.send(encode_message(Auth(str(exc))))
        await close_draining(ws, exc.close_code, close_reason(str(exc)))

    def _count_refusal(self, room: Room, peer: Peer, kind: str, reason: str) -> None:
        self.metrics.refusals.labels(kind).inc()
        log.info(
            "refused a message", extra={"room": room.name, "peer": peer.remote, "reason": reason}
        )

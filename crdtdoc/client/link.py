"""`HubLink`: the websocket loop of a connected replica, a thin adapter around `ClientSession`.

It keeps one connection to the room open on an asyncio event loop: dials, reads each message and
hands it to the session (`crdtdoc.protocol.client_session`), sends what the session returns
through an `Outbox`, renews presence, waits for replies, and dials again when the connection
ends, where and when the session says. Every decision is the session's; what is left here is
sockets, tasks and the clock. The replica it serves is told through three callbacks: a sync
message arrived, something changed, the hub refused a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from crdtdoc.client.outbox import Outbox
from crdtdoc.errors import NotConnected, RateLimited, Refused
from crdtdoc.protocol.client_session import (
    FIRST_RETRY_PAUSE,
    HEARTBEAT_SECONDS,
    ClientSession,
    Incoming,
)
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.messages import Message

log = logging.getLogger("crdtdoc.client")


class HubLink:
    """The background connection of one replica to one hub room (see the module docstring)."""

    def __init__(
        self,
        session: ClientSession,
        ws_urls: Sequence[str],
        headers: dict[str, str] | None,
        open_timeout: float,
        *,
        on_sync: Callable[[Message], None],
        on_activity: Callable[[], None],
        on_refused: Callable[[Refused], None],
    ) -> None:
        self.session = session
        self._ws_urls = list(ws_urls)  # the session's URLs, with the token in the query
        self._headers = headers
        self._open_timeout = open_timeout
        self._on_sync = on_sync  # called on the loop; the replica applies it (or queues it)
        self._on_activity = on_activity
        self._on_refused = on_refused
        self._outbox: Outbox | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._wake_reconnect: asyncio.Event | None = None
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None  # the thread the loop runs in

    def start(self) -> None:
        """Starts the link on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._task = self._loop.create_task(self._run(), name="crdtdoc-link")

    def call(self, fn: Callable[[], object]) -> None:
        """Runs `fn()` on the link's event loop: directly when already there (or not started),
        else handed over to the loop's thread (dropped once that loop is closed)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._thread:
            fn()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    def send(self, message: bytes) -> None:
        """Queues `message` for the hub; dropped while no connection is up (the sync exchange
        of the next one carries what it said)."""
        self.call(lambda: self._outbox.put(message) if self._outbox else None)

    def publish_presence(self, bump: bool = True, *, leaving: bool = False) -> None:
        """Sends our presence (on the loop), if connected."""
        message = self.session.presence_message(bump, leaving=leaving)
        if message is not None and self._outbox is not None:
            self._outbox.put(message)

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        self._wake_reconnect = wake = asyncio.Event()
        while not self._closing:
            try:
                async with ws_connect(
                    self._ws_urls[self.session.current],
                    additional_headers=self._headers,
                    max_size=None,  # the hub bounds what it sends; a whole room can be large
                    compression=None,
                    open_timeout=self._open_timeout,
                    proxy=None,
                ) as ws:
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, reset, timed out: all mean "retry later"
                self.session.last_error = f"{type(exc).__name__}: {exc}"
                log.info(
                    "hub link down",
                    extra={"url": self.session.url, "error": self.session.last_error},
                )
            if self._closing:
                return
            dial = self.session.next_dial()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(dial.delay):
                    await wake.wait()

    async def _serve(self, ws: ClientConnection) -> None:
        outbox = Outbox(ws, self.session.merged_limit)
        writer = asyncio.get_running_loop().create_task(outbox.run())
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        self._outbox = outbox
        try:
            for message in self.session.open():
                outbox.put(message)
            async for data in ws:
                self._act(self.session.receive(data, time.time()), outbox)
            self.session.last_error = (
                f"hub closed the connection: {ws.close_code} {ws.close_reason}"
            )
        except ConnectionClosed as exc:
            self.session.last_error = f"connection closed: {exc}"
        finally:
            self._outbox = None
            heartbeat.cancel()
            writer.cancel()
            self._ended(ws.close_code, ws.close_reason or "")

    def _act(self, incoming: Incoming, outbox: Outbox) -> None:
        """Does what one message from the hub asks."""
        for message in incoming.send:
            outbox.put(message)
        if incoming.reply is not None:
            waiter = self._waiters.pop(incoming.reply.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(incoming.reply)
        if incoming.sync is not None:
            self._on_sync(incoming.sync)
        if incoming.changed:
            self._on_activity()

    def _ended(self, code: int | None, reason: str) -> None:
        """The connection is over: fails the requests left unanswered, and acts on what the
        session says the close means."""
        verdict = self.session.closed(code, reason)
        for request_id in verdict.unanswered:
            waiter = self._waiters.pop(request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    NotConnected("the link to the hub dropped; the outcome is unknown")
                )
        self._on_activity()
        if verdict.protocol_error:
            log.warning(
                "the hub closed the link for a protocol reason",
                extra={"code": code, "reason": reason},
            )
        if verdict.refused is not None:
            self._on_refused(verdict.refused)
        elif verdict.slow_down:
            log.info("the hub asked to slow down", extra={"reason": reason})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.publish_presence()

    async def stop(self) -> None:
        """Sends what is queued and a goodbye, briefly, then closes the link for good."""
        self._closing = True
        outbox = self._outbox
        if outbox is not None:
            self.publish_presence(leaving=True)
            # Let the writer send what is queued (our last edits, the goodbye), briefly.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    while outbox.messages and self._outbox is outbox:
                        await asyncio.sleep(0.01)
            with contextlib.suppress(Exception):
                await outbox.ws.close(1000, "agent leaving")
        if self._wake_reconnect is not None:
            self._wake_reconnect.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -- requests --------------------------------------------------------------------------

    async def request(self, op: str, args: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Sends a request to the hub and returns its result; raises the typed error of a
        refusal, `NotConnected` when there is no link (never pretends). A request answered
        `rate_limited` (nothing was done) is sent again after a pause, within `timeout`."""
        deadline = time.monotonic() + timeout
        pause = FIRST_RETRY_PAUSE
        while True:
            try:
                return await self._request_once(op, args, max(deadline - time.monotonic(), 0.0))
            except RateLimited:
                retry = self.session.retry_rate_limited(time.monotonic(), deadline, pause)
                if retry is None:
                    raise
                sleep, pause = retry
                await asyncio.sleep(sleep)

    async def _request_once(self, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        pending = self.session.request(op, args, time.monotonic(), timeout)
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[pending.id] = waiter
        if self._outbox is not None:
            self._outbox.put(pending.message)
        try:
            async with asyncio.timeout(pending.deadline - time.monotonic()):
                reply = await waiter
        except TimeoutError:
            raise self.session.timeout_error(f"the hub did not answer {op}", timeout) from None
        finally:
            self._waiters.pop(pending.id, None)
            self.session.forget(pending)
        return self.session.outcome(reply)

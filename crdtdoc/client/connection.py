"""The connected replica: a `Replica` kept in sync with a hub room in the background.

`HubLink` is the machinery shared by the async `ConnectedReplica` and the thread-based
`BlockingReplica`: it keeps one websocket connection to the room open (reconnecting with backoff
and jitter), runs the y-protocols sync exchange, sends every local change, publishes presence, and
tracks the hub's durable version from its acknowledgements. Edits made while disconnected stay in
the replica (and, with `state_file`, in a journal on disk) and reach the hub in the sync exchange
that follows every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from crdtdoc.client.coordination import Fencing, Lease, LeaseInfo, reply_error
from crdtdoc.client.journal import Journal, read_journal
from crdtdoc.errors import (
    AuthError,
    Conflict,
    CrdtdocError,
    FencedOut,
    Forbidden,
    HubStorageError,
    InvalidValue,
    NotConnected,
    RateLimited,
    Refused,
    RemoteError,
    StaleRead,
    SyncTimeout,
    TooLarge,
    UsageError,
)
from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.coalesce import MAX_MERGED_BYTES, coalesce
from crdtdoc.protocol.extension import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Durable,
    DurableTracker,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Extension,
    Message,
    QueryAwareness,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.protocol.presence import Presence, check_presence, parse_presence, presence_state
from crdtdoc.protocol.session import SyncSession
from crdtdoc.replica import Replica, ReplicaLimits, artifact_names
from crdtdoc.versions import Version

log = logging.getLogger("crdtdoc.client")


def room_urls(hubs: str, room: str) -> list[str]:
    """The websocket URLs of `room` on each hub of `hubs` (comma-separated `ws://host:port`),
    the room name quoted as a path segment (a space, `?` or `#` in it stays part of it). Raises
    `InvalidValue` for a hub URL that already names a room, or anything but ws:// or wss://."""
    if not room:
        raise InvalidValue("the room name is empty")
    urls = []
    for hub in hubs.split(","):
        parts = urlsplit(hub.strip())
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise InvalidValue(f"{hub!r} is not a hub address: use ws://HOST:PORT (or wss://)")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise InvalidValue(
                f"{hub!r} names a path; give the hub's address alone (ws://HOST:PORT) and the "
                "room separately"
            )
        urls.append(f"{parts.scheme}://{parts.netloc}/{quote(room, safe='')}")
    return urls


REFUSED_WRITE_CODES = frozenset({4403, 4413})
ADMISSION_CODES: dict[int, type[CrdtdocError]] = {4401: AuthError, 4403: Forbidden}
"""Close codes that, before the hub welcomed the link, mean this agent may not join at all."""
"""Close codes meaning the hub refused something this replica wrote (see PROTOCOL.md §9)."""
TOO_FAST = 4429
"""The hub's rate limit: nothing was refused for what it is, so nothing is reset; the link pauses
`SLOW_DOWN_SECONDS` (the hub's budget refills) and the next sync sends the backlog as one update."""
SLOW_DOWN_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
"""How often presence is renewed (y-protocols considers a state stale after 30 s)."""
MAX_OUTBOX_MESSAGES = 4096
MAX_OUTBOX_BYTES = 16 * 1024 * 1024
"""Past these, the outbox is dropped and the link reconnects: the sync exchange on reconnect sends
the hub everything it lacks, so nothing is lost and memory stays bounded."""
MAX_PRESENCE_BYTES = 1024 * 1024


class Keep(enum.Enum):
    """Marks an argument left out (where None has a meaning of its own)."""

    KEEP = enum.auto()


def room_url(url: str, token: str | None) -> str:
    """`url` with `?token=` added (the form stock Yjs providers can send too)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise UsageError(f"hub URL must start with ws:// or wss://, got {url!r}")
    if not parts.path.strip("/"):
        raise UsageError(f"hub URL names no room: use ws://HOST:PORT/<room>, got {url!r}")
    query = parts.query
    if token is not None:
        query = (query + "&" if query else "") + "token=" + quote(token, safe="")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class _Outbox:
    """Messages for the current connection, sent in order by one writer task. Sync updates
    that wait together leave merged (`crdtdoc.protocol.coalesce`), within `max_bytes` per
    message: an agent editing faster than its link sends (a loop of edits with no await)
    costs the hub one message per batch, not one parse, judgement and stored row per edit."""

    def __init__(self, ws: ClientConnection, max_bytes: Callable[[], int]) -> None:
        self.ws = ws
        self.max_bytes = max_bytes
        self.messages: deque[bytes] = deque()
        self.bytes = 0
        self.ready = asyncio.Event()
        self.overflowed = False

    def put(self, message: bytes) -> None:
        if self.overflowed:
            return
        if len(self.messages) >= MAX_OUTBOX_MESSAGES or self.bytes > MAX_OUTBOX_BYTES:
            self.overflowed = True  # the writer closes the link; reconnect resyncs
            self.messages.clear()
        else:
            self.messages.append(message)
            self.bytes += len(message)
        self.ready.set()

    async def run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.overflowed:
                await self.ws.close(1000, "client outbox overflow; reconnecting to resync")
                return
            while self.messages:
                waiting = list(self.messages)
                self.messages.clear()
                self.bytes = 0
                for message in coalesce(waiting, self.max_bytes()):
                    await self.ws.send(message)


@dataclass(frozen=True)
class LinkOptions:
    """How a connected replica links to its hub (the keyword arguments of `connect`)."""

    token: str | None = None
    client_id: int | None = None
    limits: ReplicaLimits | None = None
    state_file: str | None = None
    status: str = "active"
    backoff: Backoff | None = None  # None: Backoff()
    open_timeout: float = 10.0
    wait_synced: bool = True
    connect_timeout: float | None = None  # give up sooner if no hub even accepts a connection


class HubLink(Replica):
    """A replica plus the background link to one hub room (see the module docstring)."""

    _coordination = True  # leases, fenced and guarded writes (async API) are available

    def __init__(self, url: str | Sequence[str], agent: str, options: LinkOptions) -> None:
        super().__init__(agent, client_id=options.client_id, limits=options.limits)
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise UsageError("connect needs at least one hub URL")
        self._ws_urls = [room_url(u, options.token) for u in self.urls]
        self._current = 0  # index of the hub in use (or tried next)
        self._headers = {"Authorization": f"Bearer {options.token}"} if options.token else None
        self._backoff = options.backoff or Backoff()
        self._open_timeout = options.open_timeout
        self._connect_timeout = min(options.connect_timeout or math.inf, options.open_timeout)
        self._wait_synced = options.wait_synced
        self.max_message_bytes: int | None = None  # the largest message the hub accepts
        self._session = SyncSession(self, trusted=True, max_message_bytes=self._step2_limit())
        self._outbox: _Outbox | None = None
        self._from_hub = False
        self._slow_down = False  # the hub closed with 4429: pause before reconnecting
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._wake_reconnect: asyncio.Event | None = None
        self._durable = DurableTracker()  # from welcomes and (delta) durable messages
        self._presence: dict[int, Presence] = {}
        self._presence_clocks: dict[int, int] = {}
        self._status = options.status
        self._task_name: str | None = None
        self._awareness_clock = 0
        self.connects = 0
        self.last_error: str | None = None
        self.store_error: str | None = None  # the hub said its store cannot commit: why
        self._welcomed = False  # the hub answered our hello: it speaks the extensions
        self._requests: dict[int, asyncio.Future[Reply]] = {}
        self._next_request = 0
        self._held: list[bytes] | None = None  # local updates held back for a guarded write
        self._hold_lock: asyncio.Lock | None = None
        self._pending_fence: asyncio.Task[None] | None = None
        self.fenced_out: FencedOut | None = None  # set when a fenced transaction was refused
        self.refused: Refused | None = None  # set when the hub refused a write (then reset)
        self.admission: CrdtdocError | None = None  # set when the hub would not let us in
        self._journal: Journal | None = None
        if options.state_file is not None:
            for update in read_journal(options.state_file):
                try:
                    self.apply_update(update)
                except CrdtdocError as exc:
                    log.warning("skipping a bad journal record", extra={"error": str(exc)})
            self._journal = Journal(options.state_file)
            self._journal.open(self.encode_update())
        self.on_update(self._on_commit)

    # -- what the hub has ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL of the hub in use, or tried next (several URLs: see `connect`)."""
        return self.urls[self._current]

    @property
    def connected(self) -> bool:
        return self._outbox is not None

    @property
    def synced(self) -> bool:
        """Connected, and the hub's answer to our state vector has arrived."""
        return self._outbox is not None and self._session.synced

    @property
    def durable(self) -> Version:
        """The newest version the hub reported as durably stored."""
        return self._durable.version

    def is_durable(self, version: Version | None = None) -> bool:
        """Whether the hub has durably stored everything in `version` (default: this replica)."""
        return self._durable.covers(version or self.version())

    def peers(self) -> list[Presence]:
        """Everyone else present in the room, from their awareness states."""
        return sorted(
            (p for cid, p in list(self._presence.items()) if cid != self.client_id),
            key=lambda p: (p.agent or "", p.client_id),
        )

    def set_presence(self, status: str | None = None, task: str | Keep | None = Keep.KEEP) -> None:
        """Changes what this agent publishes about itself: its status, and its current task
        (`task=None` clears it; leaving `task` out keeps it). Raises `InvalidValue` for a
        status or task that is not a str of at most 200 characters."""
        check_presence(
            self._status if status is None else status,
            None if isinstance(task, Keep) else task,
        )
        if status is not None:
            self._status = status
        if not isinstance(task, Keep):
            self._task_name = task
        self._call_in_loop(self._publish_presence)

    # -- hooks for the async / threaded variants -------------------------------------------

    def _deliver_sync(self, message: Message) -> None:
        """A sync message from the hub arrived (on the loop): apply it (the async variant) or
        hand it to the owning thread (the blocking variant)."""
        self._apply_from_hub(message)

    def _call_in_loop(self, fn: Callable[[], object]) -> None:
        """Runs `fn()` on the link's event loop (directly when already there)."""
        fn()

    def _activity(self) -> None:
        """Something arrived (durability, an update): waiters may re-check."""

    # -- the replica side ------------------------------------------------------------------

    def _apply_from_hub(self, message: Message) -> None:
        self._from_hub = True
        try:
            replies = self._session.handle(message)
        except CrdtdocError as exc:
            log.error("the hub sent data this replica refuses", extra={"error": str(exc)})
            self.last_error = f"hub sent invalid data: {exc}"
            replies = []
        finally:
            self._from_hub = False
        for reply in replies:
            self._send(reply)

    def _on_commit(self, update: bytes, local: bool) -> None:
        if self._held is not None and not self._from_hub:
            self._held.append(update)  # sent (or undone) when the guarded write is decided
            self._activity()
            return
        if self._journal is not None:
            self._journal.append(update, sync=local)
            if self._journal.needs_compaction():
                # The document itself, not encode_update(): no sync point inside a listener.
                self._journal.compact(self._doc.get_update())
        if not self._from_hub:  # local edits, and updates applied from elsewhere
            self._send(encode_message(SyncUpdate(update)))
        self._activity()

    def _send(self, message: bytes) -> None:
        self._call_in_loop(lambda: self._outbox.put(message) if self._outbox else None)

    # -- the link (runs on the event loop) -------------------------------------------------

    def _start_link(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crdtdoc-link")

    async def _run(self) -> None:
        self._wake_reconnect = wake = asyncio.Event()
        attempt = 0
        while not self._closing:
            try:
                async with ws_connect(
                    self._ws_urls[self._current],
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
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("hub link down", extra={"url": self.url, "error": self.last_error})
            if self._closing:
                return
            if self._session.synced:  # the link worked: start the backoff afresh
                attempt = 0
                self._session.synced = False
            # Several hubs: try the next one; the delay grows only once each was tried.
            self._current = (self._current + 1) % len(self.urls)
            delay = self._backoff.delay(attempt // len(self.urls))
            if self._slow_down:  # rate-limited: the same hub, after its budget refills
                self._slow_down = False
                self._current = (self._current - 1) % len(self.urls)
                delay = max(delay, SLOW_DOWN_SECONDS)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _serve(self, ws: ClientConnection) -> None:
        outbox = _Outbox(ws, self._merged_limit)
        writer = asyncio.get_running_loop().create_task(outbox.run())
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        self._outbox = outbox
        self.connects += 1
        try:
            outbox.put(encode_message(encode_extension(Hello(self.agent))))
            self._awareness_clock += 1  # above the "left" entry the hub wrote when we dropped
            self._publish_presence()
            for message in self._session.open():
                outbox.put(message)
            async for data in ws:
                if isinstance(data, str):
                    raise RemoteError("the hub sent a text frame; y-protocols messages are binary")
                self._receive(data)
            self.last_error = f"hub closed the connection: {ws.close_code} {ws.close_reason}"
        except ConnectionClosed as exc:
            self.last_error = f"connection closed: {exc}"
        finally:
            admitted = self._welcomed
            self._outbox = None
            self._welcomed = False
            self.store_error = None  # said by that hub, of that link: unknown from now on
            for waiter in self._requests.values():
                if not waiter.done():
                    waiter.set_exception(
                        NotConnected("the link to the hub dropped; the outcome is unknown")
                    )
            self._requests.clear()
            heartbeat.cancel()
            writer.cancel()
            self._presence.clear()
            self._activity()
            if ws.close_code in (1002, 1003, 1007, 1008, 1009, 4401):
                log.warning(
                    "the hub closed the link for a protocol reason",
                    extra={"code": ws.close_code, "reason": ws.close_reason},
                )
            if not admitted and ws.close_code in ADMISSION_CODES:
                # Refused before any exchange (token, room scope): retrying will not help.
                self.admission = ADMISSION_CODES[ws.close_code](
                    f"the hub refused to let this agent into {self.url} "
                    f"({ws.close_code}: {ws.close_reason or 'no reason given'})"
                )
                self._activity()
            elif ws.close_code in REFUSED_WRITE_CODES:
                self._on_refused(ws.close_code, ws.close_reason or "")
            elif ws.close_code == TOO_FAST:
                log.info("the hub asked to slow down", extra={"reason": ws.close_reason})
                self._slow_down = True

    def _opened(self) -> bool:
        """Whether opening the link is settled: synced, or refused admission."""
        return self.synced or self.admission is not None

    def _step2_limit(self) -> int:
        """What a step 2 to the hub may weigh: its welcome's limit, the default hub's until one
        arrives (a step 2 may leave before the welcome does)."""
        return self.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES

    def _merged_limit(self) -> int:
        """The size up to which waiting updates are merged: well under what the hub accepts;
        nothing merges until a welcome said what that is (a hub taking less than the default
        would close the link before its welcome, every time)."""
        if self.max_message_bytes is None:
            return 0
        return min(MAX_MERGED_BYTES, self.max_message_bytes // 2)

    def _reachable(self) -> bool:
        """A hub accepted a connection (or answered by refusing this agent): what
        `connect_timeout` waits for before `open_timeout` waits for the first sync."""
        return self.connected or self._opened()

    def _unreachable(self) -> NotConnected:
        """The error of a link that did not sync within its open timeout (or that no hub
        accepted within its connect timeout: `reached` is False then)."""
        reached = self._reachable()
        what = "sync with" if reached else "reach"
        within = self._open_timeout if reached else self._connect_timeout
        error = NotConnected(
            f"cannot {what} {self.url} within {within:g} s "
            f"({self.last_error or 'no answer'}); pass wait_synced=False to start offline",
            self.last_error,
        )
        error.reached = reached
        return error

    def _on_refused(self, code: int, reason: str) -> None:
        """The hub refused a write of ours and closed the link: this replica now differs from
        the hub. Start over from the hub's state (fresh client id), and tell the agent."""
        log.warning("the hub refused a write; resyncing", extra={"code": code, "reason": reason})
        self.refused = Refused(
            f"the hub refused this replica's write ({code}: {reason}); the replica was reset "
            "to the hub's state",
            code,
        )
        self._reset()
        self._session = SyncSession(self, trusted=True, max_message_bytes=self._step2_limit())
        self._activity()

    def _receive(self, data: bytes) -> None:
        message = decode_message(data)
        if isinstance(message, Auth):  # y-protocols "permission denied"
            log.warning("the hub denied permission: %s", message.reason)
            self.last_error = f"permission denied: {message.reason}"
            return
        if isinstance(message, Extension):
            ext = decode_extension(message)
            if isinstance(ext, (Welcome, Durable)):
                self._durable.receive(ext)  # a full version replaces, a delta is joined in
                if isinstance(ext, Welcome):
                    self._welcomed = True
                    self.max_message_bytes = ext.max_message_bytes
                    self._session.max_message_bytes = self._step2_limit()
                    self.store_error = None
                else:
                    self._store_state(ext.store_error)
                self._activity()
            elif isinstance(ext, Reply):
                waiter = self._requests.pop(ext.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ext)
        elif isinstance(message, Awareness):
            self._receive_presence(message.data)
        elif isinstance(message, QueryAwareness):
            self._publish_presence(bump=False)
        else:
            self._deliver_sync(message)
            self._activity()

    def _store_state(self, error: str | None) -> None:
        if error != self.store_error:
            if error is not None:
                log.warning("the hub cannot store updates", extra={"reason": error})
            else:
                log.info("the hub stores updates again")
        self.store_error = error

    def _flush_done(self, target: Version) -> bool:
        """Whether a `flush` for `target` may stop waiting: durable, refused, or the hub says
        its store cannot commit."""
        return (
            self._durable.covers(target) or self.refused is not None or self.store_error is not None
        )

    def _raise_store_error(self, target: Version) -> None:
        """Raises `HubStorageError` when `target` is not durable because the hub's store is
        failing (the edits stay here and at the hub, which retries)."""
        error = self.store_error
        if error is not None and not self._durable.covers(target):
            raise HubStorageError(error)

    def _receive_presence(self, data: bytes) -> None:
        for entry in decode_awareness(data, max_state_bytes=MAX_PRESENCE_BYTES):
            if entry.clock < self._presence_clocks.get(entry.client, -1):
                continue
            self._presence_clocks[entry.client] = entry.clock
            if entry.removed:
                self._presence.pop(entry.client, None)
            else:
                self._presence[entry.client] = replace(
                    parse_presence(entry.client, entry.state), last_seen=time.time()
                )

    def _publish_presence(self, bump: bool = True, *, leaving: bool = False) -> None:
        if self._outbox is None:
            return
        if bump:
            self._awareness_clock += 1
        state = "null" if leaving else presence_state(self.agent, self._status, self._task_name)
        entry = AwarenessEntry(self.client_id, self._awareness_clock, state)
        self._outbox.put(encode_message(Awareness(encode_awareness([entry]))))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._publish_presence()

    async def _stop_link(self) -> None:
        self._closing = True
        outbox = self._outbox
        if outbox is not None:
            self._publish_presence(leaving=True)
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

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- coordination through the hub (async only) -----------------------------------------

    async def _request(
        self, op: str, args: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Sends a request to the hub and returns its result; raises the typed error of a
        refusal, `NotConnected` when there is no link (never pretends). A request answered
        `rate_limited` (nothing was done) is sent again after a pause, within `timeout`: an
        agent that is only fast is slowed down, not failed."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                return await self._request_once(op, args, max(deadline - time.monotonic(), 0.0))
            except RateLimited:
                if time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 1.0)

    async def _request_once(self, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._outbox is None or not self._welcomed:
            raise NotConnected(
                f"{op} needs the hub, and the link to {self.url} is down "
                f"({self.last_error or 'connecting'})"
            )
        self._next_request += 1
        request_id = self._next_request
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = waiter
        self._outbox.put(encode_message(encode_extension(Request(request_id, op, args))))
        try:
            async with asyncio.timeout(timeout):
                reply = await waiter
        except TimeoutError:
            raise self._timeout_error(f"the hub did not answer {op}", timeout) from None
        finally:
            self._requests.pop(request_id, None)
        if reply.error is not None:
            raise reply_error(reply.error, reply.message, reply.result)
        return reply.result

    async def acquire(self, name: str, ttl: float = 30.0, wait: float = 0.0) -> Lease:
        """Takes the lease `name` through the hub, waiting up to `wait` seconds in a fair queue.

        Raises `LeaseHeld` (naming the holder), `Deadlock` (naming the cycle) when waiting would
        close a cycle of waits, `NotConnected` without a link. The lease renews itself while
        this replica lives; a crashed holder loses it once `ttl` runs out."""
        args = {"name": name, "ttl": ttl, "wait": wait, "client": self.client_id}
        result = await self._request("acquire", args, timeout=wait + 30.0)
        return Lease(self, name, int(result["token"]), float(result["ttl"]))

    def lease(self, name: str, ttl: float = 30.0, wait: float = 0.0) -> _LeaseContext:
        """`async with replica.lease(name, ttl=..., wait=...) as lease:` holds it for the block."""
        return _LeaseContext(self, name, ttl, wait)

    async def leases(self) -> list[LeaseInfo]:
        """Every lease held in this room: who holds it, its token, who waits for it."""
        result = await self._request("leases", {})
        return [LeaseInfo(**entry) for entry in result.get("leases", [])]

    async def next_number(self, sequence: str) -> int:
        """The next number of `sequence`: strictly increasing and never handed out twice, also
        across hub restarts (recorded before it is returned)."""
        return int((await self._request("next", {"sequence": sequence}))["value"])

    @contextmanager
    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
        fence: Fencing | None = None,
    ) -> Iterator[None]:
        """`Replica.transaction`, plus `fence=lease`: the hub applies the block's changes only
        while the lease's fencing token is current. A refused write is undone here too, and
        `FencedOut` is raised by the next `flush()` (and kept in `fenced_out`). One fenced
        write at a time: await `flush()` before the next."""
        if fence is None or self._txn_depth:
            with super().transaction(expect=expect, on=on, note=note):
                yield
            return
        if not self._coordination:
            raise UsageError(
                "a blocking replica fences with `with replica.commit(fence=...)`, which waits "
                "for the hub's answer"
            )
        if self._held is not None:
            raise UsageError("a guarded write is still in flight; await replica.flush() first")
        self._begin_hold()
        try:
            with super().transaction(expect=expect, on=on, note=note):
                yield
        except BaseException:
            self._rollback_hold()
            raise
        self._pending_fence = asyncio.get_running_loop().create_task(self._settle_fenced(fence))

    async def _settle_fenced(self, fence: Fencing) -> None:
        try:
            await self._submit_hold(None, (), fence)
        except FencedOut as exc:
            self.fenced_out = exc
        except CrdtdocError as exc:
            self.fenced_out = FencedOut(f"the fenced write was not confirmed: {exc}")
        finally:
            self._pending_fence = None
            self._activity()

    def _fresh_expect(self, expect: Version | str | None, on: Iterable[object]) -> Version | None:
        """A guarded commit's `expect` as a `Version`, first checked against what this replica
        already knows: `Conflict` at once, before anything is held or sent."""
        if isinstance(expect, str):
            expect = Version.from_token(expect)
        if expect is not None:
            try:
                self._check_fresh(expect, on)
            except StaleRead as stale:
                raise Conflict(str(stale), stale.changes) from None
        return expect

    def _runs_extend(self) -> bool:
        return self._held is None

    def _begin_hold(self) -> None:
        if self._outbox is None or not self._welcomed:
            raise NotConnected(
                f"a guarded write needs the hub, and the link to {self.url} is down "
                f"({self.last_error or 'connecting'})"
            )
        self._take_checkpoint()
        self._log_pinned = True
        self._held = []

    def _rollback_hold(self) -> None:
        held, self._held = self._held or [], None
        self._log_pinned = False
        if held:
            self._undo(held)
        self._activity()

    async def _submit_hold(
        self, expect: Version | None, on: Iterable[object], fence: Fencing | None
    ) -> None:
        """Sends the held updates as one guarded commit and settles them by the answer."""
        try:
            held, args = self._hold_request(expect, on, fence)
            if args is None:
                return
            await self._request("commit", args)
        except BaseException:
            self._rollback_hold()  # refused, or the outcome is unknown: undo (a fresh id)
            raise
        self._settle_hold(held)

    def _hold_request(
        self, expect: Version | None, on: Iterable[object], fence: Fencing | None
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """The held updates and the `commit` request that submits them (None: nothing held,
        and the hold is over)."""
        held = list(self._held or [])
        if not held:
            self._held = None
            self._log_pinned = False
            return held, None
        args: dict[str, Any] = {"updates": held, "client": self.client_id}
        if expect is not None:
            args["expect"] = expect.to_bytes()
            args["on"] = sorted(artifact_names(on))
        if fence is not None:
            args["fence"] = {"name": fence.name, "token": fence.token}
        limit = self.max_message_bytes
        if limit is not None and sum(map(len, held)) > limit // 2:  # else small: not measured
            size = len(encode_message(encode_extension(Request(0, "commit", args))))
            if size > limit:
                raise TooLarge(
                    f"this write is {size:,} bytes as one message and the hub at {self.url} "
                    f"accepts at most {limit:,} (its max_message_bytes); nothing was written: "
                    "write it in smaller parts",
                    1009,
                )
        return held, args

    def _settle_hold(self, held: list[bytes]) -> None:
        """The hub applied the `held` updates: they are journaled, and edits made while it
        decided go on their way as usual."""
        later = (self._held or [])[len(held) :]
        self._held = None
        self._log_pinned = False
        for update in held:
            if self._journal is not None:
                self._journal.append(update, sync=True)
        for update in later:
            self._on_commit(update, True)

    def _raise_refused(self) -> None:
        if self.refused is not None:
            refused, self.refused = self.refused, None
            raise refused

    def _timeout_error(self, what: str, timeout: float) -> SyncTimeout:
        state = (
            "connected" if self.connected else f"not connected ({self.last_error or 'connecting'})"
        )
        return SyncTimeout(f"{what} within {timeout:g} s; the link to {self.url} is {state}")


class _LeaseContext:
    def __init__(self, link: HubLink, name: str, ttl: float, wait: float) -> None:
        self._args = (link, name, ttl, wait)
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        link, name, ttl, wait = self._args
        self._lease = await link.acquire(name, ttl=ttl, wait=wait)
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.release()


class ConnectedReplica(HubLink):
    """A `Replica` synced with a hub room by a task on the running event loop.

    Use `async with crdtdoc.connect(url, agent=...) as replica:`; every `Replica` method works as
    usual, and the replica stays in sync in the background.
    """

    _changed: asyncio.Event | None = None  # set by the loop whenever something arrives

    def _activity(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def __aenter__(self) -> ConnectedReplica:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Opens the link; with `wait_synced` (the default), waits for the first sync and raises
        `NotConnected` if the hub cannot be reached within `open_timeout`."""
        self._changed = asyncio.Event()
        self._start_link()
        if self._wait_synced:
            try:
                started = time.monotonic()
                await self._wait_until(self._reachable, self._connect_timeout, "no connection")
                left = self._open_timeout - (time.monotonic() - started)
                await self._wait_until(self._opened, max(left, 0.0), "no sync")
            except SyncTimeout:
                await self.close()
                raise self._unreachable() from None
            if self.admission is not None:
                await self.close()
                raise self.admission

    async def close(self) -> None:
        """Sends what is queued, says goodbye, and closes the link (the replica stays usable)."""
        await self._stop_link()
        self._close_journal()

    async def flush(self, timeout: float = 30.0) -> Version:
        """Returns once the hub has durably stored everything this replica holds now (every
        local change made so far); returns the durable version. Raises `SyncTimeout`, or
        `HubStorageError` at once while the hub says its store cannot commit (nothing is lost:
        call again later)."""
        if self._pending_fence is not None:  # a fenced write first gets its answer
            await asyncio.shield(self._pending_fence)
        if self.fenced_out is not None:
            refused, self.fenced_out = self.fenced_out, None
            raise refused
        await self._raise_refused_once_resynced(timeout)
        target = self.version()
        await self._wait_until(
            lambda: self._flush_done(target), timeout, "the hub did not confirm durable storage"
        )
        await self._raise_refused_once_resynced(timeout)  # refused while waiting: reset
        self._raise_store_error(target)
        return self._durable.version

    async def _raise_refused_once_resynced(self, timeout: float) -> None:
        """Raises a pending `Refused` once the reset replica holds the hub's state again (or
        `timeout` passed): an agent that then reads and redoes its work sees what the hub
        has, not an empty replica (a redo diffed against nothing would duplicate it all)."""
        if self.refused is None:
            return
        with contextlib.suppress(CrdtdocError):
            await self._wait_until(lambda: self.synced, timeout, "no resync after a refusal")
        self._raise_refused()

    @contextlib.asynccontextmanager
    async def commit(
        self,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        *,
        fence: Fencing | None = None,
        note: str | None = None,
    ) -> AsyncIterator[None]:
        """A guarded commit decided by the hub: the block's changes travel as one update that
        the hub applies only if no artifact in `on` (all when empty) changed since `expect`,
        and only if `fence` (a lease) is still current. Otherwise nothing is applied anywhere,
        this replica included, and `Conflict` / `FencedOut` is raised at the end of the block.
        """
        expect = self._fresh_expect(expect, on)
        lock = self._hold_lock = self._hold_lock or asyncio.Lock()
        async with lock:
            if self._pending_fence is not None:
                await asyncio.shield(self._pending_fence)
            self._begin_hold()
            try:
                with Replica.transaction(self, note=note):
                    yield
            except BaseException:
                self._rollback_hold()
                raise
            await self._submit_hold(expect, on, fence)

    async def wait_for(self, version: Version | str, timeout: float | None = None) -> None:
        """Returns once this replica has everything in `version` (a `Version` or its token)."""
        target = Version.from_token(version) if isinstance(version, str) else version
        await self._wait_until(
            lambda: target <= self.version(),
            timeout,
            "this replica did not receive everything in that version",
        )

    async def _wait_until(
        self, check: Callable[[], bool], timeout: float | None, what: str
    ) -> None:
        changed = self._changed
        if changed is None:
            raise NotConnected("the replica is not started: use `async with crdtdoc.connect(...)`")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not check():
            changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._timeout_error(what, timeout or 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()


def connect(
    url: str | Sequence[str],
    agent: str,
    *,
    token: str | None = None,
    client_id: int | None = None,
    state_file: str | None = None,
    status: str = "active",
    wait_synced: bool = True,
    open_timeout: float = 10.0,
    backoff: Backoff | None = None,
    limits: ReplicaLimits | None = None,
) -> ConnectedReplica:
    """A replica of the room at `url` (`ws://HOST:PORT/<room>`) kept in sync with the hub.

    `async with crdtdoc.connect(url, agent="alice") as replica:` syncs, then yields the replica.
    `state_file` keeps local data on disk across a crash of the agent; `wait_synced=False` starts
    without waiting for the hub (offline work is sent when the link comes up).

    `url` may be a list of URLs of hubs that share one PostgreSQL store (docs/SCALING.md): the
    replica uses the first, and when a link fails it moves on to the next, so an agent survives
    the death of its hub. What any hub acknowledged as durable is in the shared store.
    """
    options = LinkOptions(
        token=token,
        client_id=client_id,
        limits=limits,
        state_file=state_file,
        status=status,
        backoff=backoff,
        open_timeout=open_timeout,
        wait_synced=wait_synced,
    )
    return ConnectedReplica(url, agent, options)

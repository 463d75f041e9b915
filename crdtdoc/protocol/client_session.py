"""`ClientSession`: a connected replica's side of its hub link, with no I/O of its own.

The asyncio link (`crdtdoc.client.link`) owns the socket, the clock and the tasks; it tells this
class what happened (the link came up, bytes arrived, the hub closed it, a request is sent) and
sends what it returns. The decisions are made here: which hub to dial next and after how long,
what each message and each close code from the hub means (the agent may not join, a write was
refused, slow down), which reply answers which request, what a refused request raises, when a
rate-limited request is tried again. Time and randomness are parameters (`now`, `rng`), so every
decision is tested without an event loop. PROTOCOL.md sections 8 to 10 say what the hub does.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from crdtdoc.errors import (
    AuthError,
    Conflict,
    CoordinationError,
    CrdtdocError,
    Deadlock,
    FencedOut,
    Forbidden,
    HubStorageError,
    LeaseHeld,
    LeaseLost,
    LinkError,
    NotConnected,
    RateLimited,
    Refused,
    RemoteError,
    SyncTimeout,
    UsageError,
)
from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.coalesce import MAX_MERGED_BYTES
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
    decode_message,
    encode_message,
)
from crdtdoc.protocol.presence import Presence, parse_presence, presence_state
from crdtdoc.protocol.requests import ReplyCode
from crdtdoc.protocol.session import SyncSession
from crdtdoc.replica import Replica
from crdtdoc.versions import Version

log = logging.getLogger("crdtdoc.client")

ADMISSION_CODES: dict[int, type[CrdtdocError]] = {4401: AuthError, 4403: Forbidden}
"""Close codes that, before the hub welcomed the link, mean this agent may not join at all."""
REFUSED_WRITE_CODES = frozenset({4403, 4413})
"""Close codes meaning the hub refused something this replica wrote (see PROTOCOL.md §9)."""
TOO_FAST = 4429
_DOING = {
    "acquire": "taking a lease",
    "renew": "renewing a lease",
    "release": "releasing a lease",
    "leases": "listing leases",
    "next": "drawing a number",
    "commit": "a guarded write",
    "status": "setting a status",
}
"""What each request does, in the words an error says it in."""
MESSAGE_TOO_BIG = 1009
"""The hub's close code for a message over its `max_message_bytes`."""
"""The hub's rate limit: nothing was refused for what it is, so nothing is reset; the link pauses
`SLOW_DOWN_SECONDS` (the hub's budget refills) and the next sync sends the backlog as one update."""
SLOW_DOWN_SECONDS = 1.0
PROTOCOL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 4401})
"""Close codes that say this client sent something wrong: worth a warning in the log."""
HEARTBEAT_SECONDS = 15.0
"""How often presence is renewed (y-protocols considers a state stale after 30 s)."""
MAX_PRESENCE_BYTES = 1024 * 1024
FIRST_RETRY_PAUSE = 0.05
"""The pause before a request answered `rate_limited` is sent again; it doubles up to 1 s."""


def reply_error(code: str, message: str, result: dict[str, Any]) -> CrdtdocError:
    """The typed error for a refused request (`ReplyCode`; a code this client does not know,
    from a newer hub, is a `LinkError`: nothing it asked for was done)."""
    if code == ReplyCode.HELD:
        holder = result.get("holder")
        return LeaseHeld(message, holder if isinstance(holder, str) else None)
    if code == ReplyCode.DEADLOCK:
        cycle = result.get("cycle")
        return Deadlock(message, [str(c) for c in cycle] if isinstance(cycle, list) else [])
    if code == ReplyCode.LOST:
        return LeaseLost(message)
    if code == ReplyCode.FENCED:
        return FencedOut(message)
    if code == ReplyCode.FORBIDDEN:
        return Forbidden(message)
    if code == ReplyCode.FULL:
        return Refused(f"the hub refused the write: {message}", 4413)
    if code == ReplyCode.RATE_LIMITED:
        return RateLimited(message)
    if code == ReplyCode.CONFLICT:
        changes = result.get("changes")
        return Conflict(message, list(changes) if isinstance(changes, list) else [])
    if code == ReplyCode.INVALID:
        return UsageError(f"the hub refused the request's arguments: {message}")
    if code in (ReplyCode.LIMIT, ReplyCode.MISSING):
        return CoordinationError(f"the hub refused the request ({code}): {message}")
    if code == ReplyCode.UNAVAILABLE:
        return HubStorageError(message)
    return LinkError(f"the hub could not answer the request ({code}): {message}")


@dataclass(frozen=True)
class Dial:
    """Where and when to connect next: the hub at index `hub` of the list, after `delay` s."""

    hub: int
    delay: float


@dataclass(frozen=True)
class Closed:
    """What the end of a connection means. At most one of `admission` (the hub will not let
    this agent in: retrying will not help), `refused` (it refused a write: reset to its state)
    and `slow_down` (its rate limit: the next dial waits) is set."""

    unanswered: list[int]
    """The requests still waiting: their outcome is unknown (fail them with `NotConnected`)."""
    code: int | None
    reason: str
    admission: CrdtdocError | None = None
    refused: Refused | None = None
    slow_down: bool = False
    protocol_error: bool = False  # the hub says this client sent something wrong


@dataclass
class Incoming:
    """What one message from the hub asks of the link."""

    send: list[bytes] = field(default_factory=list)
    sync: Message | None = None
    """A sync message, for the replica to apply (`ClientSession.apply_sync`) in its thread."""
    reply: Reply | None = None
    """The answer to a request still waiting for one."""
    changed: bool = False  # something arrived that waiters (flush, wait_for) may re-check


@dataclass(frozen=True)
class Pending:
    """A request sent to the hub and not answered yet."""

    id: int
    op: str
    message: bytes
    deadline: float  # on the clock the link passed as `now`


class ClientSession:
    """One replica's side of its link to a hub room (see the module docstring)."""

    def __init__(
        self, replica: Replica, urls: Sequence[str], backoff: Backoff, status: str
    ) -> None:
        self.replica = replica
        self.urls = list(urls)
        self.current = 0  # index of the hub in use (or tried next)
        self._backoff = backoff
        self._attempt = 0  # dials since the link last worked
        self._slow_down = False  # the hub closed with 4429: pause before dialling again
        self.too_big: str | None = None  # why the hub last closed for a too-large message
        self.max_message_bytes: int | None = None  # the largest message the hub accepts
        self.sync = SyncSession(replica, trusted=True, max_message_bytes=self.step2_limit())
        self.connected = False
        self.welcomed = False  # the hub answered our hello: it speaks the extensions
        self.connects = 0
        self.last_error: str | None = None
        self.store_error: str | None = None  # the hub said its store cannot commit: why
        self.admission: CrdtdocError | None = None  # set when the hub would not let us in
        self.durable = DurableTracker()  # from welcomes and (delta) durable messages
        self.status = status
        self.task: str | None = None
        self.presence: dict[int, Presence] = {}
        self._presence_clocks: dict[int, int] = {}
        self._awareness_clock = 0
        self._requests: dict[int, Pending] = {}
        self._next_request = 0
        self.applying_sync = False  # True while an update from the hub is being applied

    @property
    def url(self) -> str:
        """The URL of the hub in use, or tried next."""
        return self.urls[self.current]

    @property
    def synced(self) -> bool:
        """Connected, and the hub's answer to our state vector has arrived."""
        return self.connected and self.sync.synced

    @property
    def opened(self) -> bool:
        """Whether opening the link is settled: synced, or refused admission."""
        return self.synced or self.admission is not None

    @property
    def reachable(self) -> bool:
        """A hub accepted a connection (or answered by refusing this agent): what
        `connect_timeout` waits for before `open_timeout` waits for the first sync."""
        return self.connected or self.opened

    # -- the connection's life -------------------------------------------------------------

    def open(self) -> list[bytes]:
        """The link came up: what to send first (hello, our presence, our state vector)."""
        self.connected = True
        self.connects += 1
        hello = encode_message(encode_extension(Hello(self.replica.agent)))
        self._awareness_clock += 1  # above the "left" entry the hub wrote when we dropped
        return [hello, self._presence(), *self.sync.open()]

    def receive(self, data: bytes | str, now: float) -> Incoming:
        """One message from the hub (`now`: the wall clock, for presence). Raises
        `RemoteError` for what no hub sends (close the link on it)."""
        if isinstance(data, str):
            raise RemoteError("the hub sent a text frame; y-protocols messages are binary")
        message = decode_message(data)
        if isinstance(message, Auth):  # y-protocols "permission denied"
            log.warning("the hub denied permission: %s", message.reason)
            self.last_error = f"permission denied: {message.reason}"
            return Incoming()
        if isinstance(message, Extension):
            ext = decode_extension(message)
            if isinstance(ext, Welcome):
                self.durable.receive(ext)  # a full version replaces what we knew
                self.welcomed = True
                self.max_message_bytes = ext.max_message_bytes
                self.sync.max_message_bytes = self.step2_limit()
                self.store_error = None
                return Incoming(changed=True)
            if isinstance(ext, Durable):
                self.durable.receive(ext)  # a full version replaces, a delta is joined in
                self._store_state(ext.store_error)
                return Incoming(changed=True)
            if isinstance(ext, Reply) and self._requests.pop(ext.id, None) is not None:
                return Incoming(reply=ext)
            return Incoming()
        if isinstance(message, Awareness):
            self._receive_presence(message.data, now)
            return Incoming()
        if isinstance(message, QueryAwareness):
            return Incoming(send=[self._presence(bump=False)])
        return Incoming(sync=message, changed=True)

    def apply_sync(self, message: Message) -> list[bytes]:
        """Applies a sync message from the hub to the replica; returns the replies to send.
        Data the replica refuses is logged and kept in `last_error`, never raised."""
        self.applying_sync = True
        try:
            return self.sync.handle(message)
        except CrdtdocError as exc:
            log.error("the hub sent data this replica refuses", extra={"error": str(exc)})
            self.last_error = f"hub sent invalid data: {exc}"
            return []
        finally:
            self.applying_sync = False

    def closed(self, code: int | None, reason: str) -> Closed:
        """The connection ended (`code`: the hub's close code, None if it never said): what
        this link knew of that hub is forgotten, and the returned `Closed` says what it means."""
        admitted = self.welcomed
        self.connected = False
        self.welcomed = False
        self.store_error = None  # said by that hub, of that link: unknown from now on
        unanswered = list(self._requests)
        self._requests.clear()
        self.presence.clear()
        verdict = Closed(unanswered, code, reason, protocol_error=code in PROTOCOL_CLOSE_CODES)
        if not admitted and code in ADMISSION_CODES:
            # Refused before any exchange (token, room scope): retrying will not help.
            self.admission = ADMISSION_CODES[code](
                f"the hub refused to let this agent into {self.url} "
                f"({code}: {reason or 'no reason given'})"
            )
            return replace(verdict, admission=self.admission)
        if code in REFUSED_WRITE_CODES:
            refused = Refused(
                f"the hub refused this replica's write ({code}: {reason}); the replica was "
                "reset to the hub's state",
                code,
            )
            return replace(verdict, refused=refused)
        if code == TOO_FAST:
            self._slow_down = True
            return replace(verdict, slow_down=True)
        if code == MESSAGE_TOO_BIG:
            limit = self.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
            self.too_big = (
                f"the hub closed the link: a message of this replica is too large for it (its "
                f"max_message_bytes is {limit:,}); that change stays here, unsent: write in "
                "smaller parts, or ask for a larger --max-message-bytes"
            )
        elif self.sync.synced:
            self.too_big = None
        return verdict

    def restart_sync(self) -> None:
        """The replica was reset to start over from the hub's state: a fresh sync exchange."""
        self.sync = SyncSession(self.replica, trusted=True, max_message_bytes=self.step2_limit())

    def next_dial(self, rng: random.Random | None = None) -> Dial:
        """Which hub to try next and how long to wait first. With several hubs each is tried in
        turn and the delay grows only once all were; a link that synced starts the backoff
        afresh; after the hub's rate limit (4429) the same hub, once its budget refilled."""
        if self.sync.synced and self.too_big is None:  # the link worked: afresh
            self._attempt = 0
        self.sync.synced = False
        hubs = len(self.urls)
        self.current = (self.current + 1) % hubs
        delay = self._backoff.delay(self._attempt // hubs, rng)
        if self._slow_down:
            self._slow_down = False
            self.current = (self.current - 1) % hubs
            delay = max(delay, SLOW_DOWN_SECONDS)
        self._attempt += 1
        return Dial(self.current, delay)

    # -- limits ----------------------------------------------------------------------------

    def step2_limit(self) -> int:
        """What a step 2 to the hub may weigh: its welcome's limit, the default hub's until one
        arrives (a step 2 may leave before the welcome does)."""
        return self.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES

    def merged_limit(self) -> int:
        """The size up to which waiting updates are merged: well under what the hub accepts;
        nothing merges until a welcome said what that is (a hub taking less than the default
        would close the link before its welcome, every time)."""
        if self.max_message_bytes is None:
            return 0
        return min(MAX_MERGED_BYTES, self.max_message_bytes // 2)

    # -- durability ------------------------------------------------------------------------

    def _store_state(self, error: str | None) -> None:
        if error != self.store_error:
            if error is not None:
                log.warning("the hub cannot store updates", extra={"reason": error})
            else:
                log.info("the hub stores updates again")
        self.store_error = error

    def store_failure(self, target: Version) -> HubStorageError | None:
        """The error of a `flush` for `target` that is not durable because the hub's store is
        failing (the edits stay here and at the hub, which retries); None otherwise."""
        error = self.store_error
        if error is not None and not self.durable.covers(target):
            return HubStorageError(error)
        return None

    # -- requests --------------------------------------------------------------------------

    def request(self, op: str, args: dict[str, Any], now: float, timeout: float) -> Pending:
        """A request to send now (`now`: a monotonic clock), waited for until its deadline.
        Raises `NotConnected` when no welcomed link is up (the hub would not take it: never
        pretend)."""
        if not (self.connected and self.welcomed):
            raise NotConnected(
                f"{_DOING.get(op, op)} needs the hub, and the link to {self.url} is down "
                f"({self.last_error or 'connecting'})"
            )
        self._next_request += 1
        number = self._next_request
        message = encode_message(encode_extension(Request(number, op, args)))
        pending = Pending(number, op, message, now + timeout)
        self._requests[number] = pending
        return pending

    def forget(self, pending: Pending) -> None:
        """`pending` is no longer waited for (answered, timed out, cancelled): a late reply to
        it is ignored."""
        self._requests.pop(pending.id, None)

    @staticmethod
    def outcome(reply: Reply) -> dict[str, Any]:
        """The result a reply carries, or the typed error of its refusal, raised."""
        if reply.error is not None:
            raise reply_error(reply.error, reply.message, reply.result)
        return reply.result

    @staticmethod
    def retry_rate_limited(
        now: float, deadline: float, pause: float, rng: random.Random | None = None
    ) -> tuple[float, float] | None:
        """A request answered `rate_limited` (nothing was done): how long to sleep before
        sending it again, and the pause to pass next time; None when that would pass its
        deadline (raise then). An agent that is only fast is slowed down, not failed."""
        if now + pause >= deadline:
            return None
        return pause * (0.5 + (rng or random).random()), min(pause * 2, 1.0)

    def timeout_error(self, what: str, timeout: float) -> SyncTimeout:
        state = (
            "connected" if self.connected else f"not connected ({self.last_error or 'connecting'})"
        )
        why = f" ({self.too_big})" if self.too_big else ""
        return SyncTimeout(f"{what} within {timeout:g} s; the link to {self.url} is {state}{why}")

    def unreachable(self, open_timeout: float, connect_timeout: float) -> NotConnected:
        """The error of a link that did not sync within its open timeout (or that no hub
        accepted within its connect timeout: `reached` is False then)."""
        reached = self.reachable
        what = "sync with" if reached else "reach"
        within = open_timeout if reached else connect_timeout
        error = NotConnected(
            f"cannot {what} {self.url} within {within:g} s "
            f"({self.last_error or 'no answer'}); pass wait_synced=False to start offline",
            self.last_error,
        )
        error.reached = reached
        return error

    # -- presence --------------------------------------------------------------------------

    def presence_message(self, bump: bool = True, *, leaving: bool = False) -> bytes | None:
        """Our awareness entry to send (None while not connected); `leaving` says goodbye."""
        return self._presence(bump, leaving=leaving) if self.connected else None

    def _presence(self, bump: bool = True, *, leaving: bool = False) -> bytes:
        if bump:
            self._awareness_clock += 1
        state = "null" if leaving else presence_state(self.replica.agent, self.status, self.task)
        entry = AwarenessEntry(self.replica.client_id, self._awareness_clock, state)
        return encode_message(Awareness(encode_awareness([entry])))

    def _receive_presence(self, data: bytes, now: float) -> None:
        for entry in decode_awareness(data, max_state_bytes=MAX_PRESENCE_BYTES):
            if entry.clock < self._presence_clocks.get(entry.client, -1):
                continue
            self._presence_clocks[entry.client] = entry.clock
            if entry.removed:
                self.presence.pop(entry.client, None)
            else:
                self.presence[entry.client] = replace(
                    parse_presence(entry.client, entry.state), last_seen=now
                )

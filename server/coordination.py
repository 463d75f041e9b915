"""`Coordinator`: leases with fencing tokens, fair waiting with deadlock detection, and unique
numbers, for every room of one hub.

Linearizable per hub: every decision is taken on the hub's event loop, in the order requests
arrive, and recorded in the store before the requester is told. A fencing token strictly increases
each time a lease changes hands, and the newest token of every lease name is stored with the
grant, so neither a restart nor a crash can hand out a token twice or let two agents hold one
lease. Expiry uses the hub's clock: a holder that stops renewing (it crashed, or it is cut off)
loses the lease when its TTL runs out, and the next waiter gets it with a higher token.

Every request is authorized against its connection (`Caller`): a read-only token takes, renews
and releases no lease and draws no number; only a lease's holder renews or releases it; `leases`
shows a lease's token to its holder alone; and a fenced write passes only with the newest token
actually issued for its lease (never one above it, so a made-up token fails). Who the holder is
depends on what the hub can verify, see `Caller` and docs/SECURITY.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from crdtdoc.artifacts.tasks import task_of_lease
from crdtdoc.protocol.extension import Reply
from crdtdoc.server.store import SqliteCommitter, StoredLease
from crdtdoc.tokens import Grant

log = logging.getLogger("crdtdoc.hub.coordination")

MAX_NAME = 200
MIN_TTL, MAX_TTL = 0.1, 3600.0
MAX_WAIT = 600.0

Key = tuple[str, str]  # (room, lease or sequence name)
ExpiryHook = Callable[[str, str, str], Awaitable[None]]
"""Called with (room, lease name, agent) when a lease expires without being released."""
AbandonedHook = Callable[[str, str, str], bool]
"""(room, lease name, holder) -> whether the holder gave the lease's purpose up: a task claim
whose record in the task list is gone (someone completed or reopened the task)."""
CLAIM_GRACE_SECONDS = 10.0
"""A new claim lease is never judged abandoned: its record is written just after the grant."""


def claim_abandoned(
    hook: AbandonedHook | None, room: str, name: str, agent: str, held_for: float
) -> bool:
    """Whether a new acquire may free lease `name`, held by `agent` for `held_for` seconds: past
    the grace, its claim record is gone (both coordinators ask this; the bare lease would refuse
    every new claim, naming a holder no list shows)."""
    return hook is not None and held_for > CLAIM_GRACE_SECONDS and hook(room, name, agent)


MAX_LEASES_PER_AGENT = 1000
"""Leases one agent may hold or wait for at once, over every room of a hub (the default of
`--max-leases-per-agent`): each costs the hub memory and a timer until it expires."""


def too_many_leases(agent: str, limit: int) -> str:
    return (
        f"{agent} already holds or waits for {limit} leases (--max-leases-per-agent): release "
        "some first"
    )


class RequestError(Exception):
    """An operation's refusal: `code` and message go back in the reply."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


@dataclass
class Lease:
    owner: str  # "agent#client id"
    agent: str
    token: int
    expires: float  # monotonic
    timer: asyncio.TimerHandle | None = None
    granted: float = field(default_factory=time.monotonic)


@dataclass
class Waiter:
    owner: str
    agent: str
    ttl: float
    peer: object
    granted: asyncio.Future[Reply] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def ok_reply(request_id: int, **result: Any) -> Reply:
    return Reply(request_id, result)


class Requester(Protocol):
    """What a coordinator needs of the connection a request came on (a
    `crdtdoc.server.peer.Peer`)."""

    @property
    def grant(self) -> Grant | None:
        """What its token allows; None when the hub has no secret."""

    @property
    def identity(self) -> str | None:
        """The agent its token names; None when the hub has no secret."""


READ_ONLY_REFUSED = {
    "acquire": "take leases",
    "renew": "renew leases",
    "release": "release leases",
    "next": "draw numbers",
}
"""Operations a read-only token may not send (they change coordination state), described."""


@dataclass(frozen=True)
class Caller:
    """Who sent a coordination request, as far as the hub can tell.

    With a secret, `agent` is the identity in the connection's signed token: unforgeable, and the
    whole of who holds a lease (the same identity may renew from any of its connections, so a
    holder that reconnects, or fails over to another hub, keeps its lease). Without a secret,
    `agent` is the name the client gave in hello and the client id it acquired under is its own
    claim too: both only tell honest agents apart (they stop mistakes, not a client that lies,
    as the hub trusts every client in that mode). The connection itself is not part of the
    holder in either mode: a holder must keep renewing across a reconnect."""

    agent: str
    authenticated: bool  # `agent` comes from a token checked against the hub's secret
    read_only: bool
    artifacts: frozenset[str] | None = None  # the artifacts its token may change (None: all)

    @classmethod
    def of(cls, peer: Requester, agent: str) -> Caller:
        """The caller behind `peer`; `agent` is the name it gave in hello."""
        grant = peer.grant
        if grant is None:
            return cls(agent, authenticated=False, read_only=False)
        identity = peer.identity if peer.identity is not None else grant.agent
        return cls(identity, True, grant.read_only, grant.artifacts)

    def check_may(self, op: str, args: dict[str, Any]) -> None:
        """Raises `forbidden` when a read-only token asks for an operation that changes state,
        or a token scoped to some artifacts claims a task of a list outside them (the claim's
        record could not be written, and the lease alone would lock the task)."""
        what = READ_ONLY_REFUSED.get(op)
        if self.read_only and what is not None:
            raise RequestError(
                "forbidden", f"{self.agent!r} has a read-only token: it may not {what}"
            )
        name = args.get("name")
        task = task_of_lease(name) if op == "acquire" and isinstance(name, str) else None
        if task is not None and self.artifacts is not None and task[0] not in self.artifacts:
            raise RequestError(
                "forbidden",
                f"{self.agent!r} may change only {', '.join(sorted(self.artifacts))}: it may "
                f"not claim tasks of {task[0]!r}",
            )

    def check_holder(
        self, name: str, holder: str, owner: str, args: dict[str, Any], action: str
    ) -> None:
        """Raises `forbidden` unless this caller holds lease `name` (held by agent `holder`,
        owned by `owner` = "agent#client"). Without a secret, a `client` in the request must
        also be the one that acquired it."""
        if holder != self.agent:
            raise RequestError(
                "forbidden",
                f"lease {name!r} is held by {holder}, not by {self.agent}: "
                f"only its holder may {action} it",
                holder=holder,
            )
        if self.authenticated or args.get("client") is None:
            return
        client = arg_int(args, "client")
        if owner != f"{holder}#{client}":
            raise RequestError(
                "forbidden",
                f"lease {name!r} was taken by another client of {holder} than client {client}: "
                f"only that client may {action} it",
                holder=holder,
            )

    def sees_token(self, holder: str) -> bool:
        """Whether `leases` may show this caller the token of a lease `holder` holds (a token
        is what renew and release present, so only its holder sees it)."""
        return holder == self.agent


def fence_refusal(
    name: str, token: int, newest: int, holder: str | None, writer: str | None
) -> str | None:
    """Why a write by agent `writer` fenced with `token` for lease `name` is refused, or None if
    it may pass.

    `newest` is the newest fencing token issued for the name (0: none yet), `holder` the agent
    holding the lease now, if any. A fenced write passes only while its writer holds the lease
    under that token: an older token belongs to a holder that lost the lease, one above it was
    never issued (made up, or from another hub's database), and a lease released, run out or
    held by another agent fences nobody's writes."""
    if 1 <= token == newest and holder is not None and holder == writer:
        return None
    if newest == 0:
        return f"fencing token {token} was never issued for lease {name!r} (it was never taken)"
    if not 1 <= token <= newest:
        return f"fencing token {token} was never issued for lease {name!r}"
    if token < newest:
        who = f" (now held by {holder})" if holder is not None else ""
        return (
            f"lease {name!r} changed hands after fencing token {token}{who}; this write carries "
            "that older token"
        )
    if holder is None:
        return f"lease {name!r} is not held any more (released, or its time ran out): take it again"
    return f"lease {name!r} is held by {holder}, not by {writer}: only its holder fences with it"


class Coordinator:
    """Coordination state for all rooms of one hub (see the module docstring)."""

    def __init__(
        self,
        committer: SqliteCommitter,
        on_expire: ExpiryHook | None = None,
        *,
        max_leases_per_agent: int = MAX_LEASES_PER_AGENT,
        abandoned: AbandonedHook | None = None,
    ) -> None:
        self._committer = committer
        self._on_expire = on_expire
        self._abandoned = abandoned
        self._max_leases = max_leases_per_agent
        self._leases: dict[Key, Lease] = {}
        self._tokens: dict[Key, int] = {}
        self._waiters: dict[Key, deque[Waiter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        """Restores held leases and last fencing tokens from the store."""
        store = self._committer.store
        leases, self._tokens = await self._committer.run_blocking(store.load_coordination)
        now_wall, now = time.time(), time.monotonic()
        for stored in leases:
            key = (stored.room, stored.name)
            self._tokens[key] = max(self._tokens.get(key, 0), stored.token)
            remaining = stored.expires_at - now_wall
            if remaining <= 0:
                self._spawn(self._persist_drop(key, stored.token, stored.agent, expired=True))
                continue
            lease = Lease(stored.owner, stored.agent, stored.token, now + remaining)
            self._leases[key] = lease
            self._arm(key, lease)

    # -- requests --------------------------------------------------------------------------

    async def handle(
        self,
        room: str,
        peer: Requester,
        agent: str,
        request_id: int,
        op: str,
        args: dict[str, Any],
    ) -> Reply:
        """Answers one request from `peer` (whose hello named `agent`), authorized first."""
        try:
            caller = Caller.of(peer, agent)
            caller.check_may(op, args)
            if op == "acquire":
                return await self._acquire(room, peer, caller.agent, request_id, args)
            if op == "renew":
                return await self._renew(room, caller, request_id, args)
            if op == "release":
                return await self._release(room, caller, request_id, args)
            if op == "leases":
                return self._list(room, caller, request_id)
            if op == "next":
                name = arg_name(args, "sequence")
                store = self._committer.store
                value = await self._committer.run_blocking(partial(store.next_number, room, name))
                return ok_reply(request_id, value=value)
            raise RequestError("invalid", f"unknown operation {op!r}")
        except RequestError as exc:
            return Reply(request_id, exc.details, exc.code, str(exc))

    def fence_ok(self, room: str, name: str, token: int, writer: str | None) -> tuple[bool, str]:
        """Whether a write by `writer` fenced with `token` for lease `name` may be applied, and
        if not, why (see `fence_refusal`)."""
        lease = self._leases.get((room, name))
        why = fence_refusal(
            name, token, self._tokens.get((room, name), 0), lease.agent if lease else None, writer
        )
        return why is None, why or ""

    def forget(self, peer: object) -> None:
        """The peer disconnected: it waits for nothing any more."""
        for queue in self._waiters.values():
            for waiter in list(queue):
                if waiter.peer is peer:
                    queue.remove(waiter)
                    waiter.granted.cancel()

    # -- operations ------------------------------------------------------------------------

    async def _acquire(
        self, room: str, peer: object, agent: str, request_id: int, args: dict[str, Any]
    ) -> Reply:
        name = arg_name(args, "name")
        ttl = arg_number(args, "ttl", MIN_TTL, MAX_TTL)
        wait = arg_number(args, "wait", 0.0, MAX_WAIT, default=0.0)
        client = args.get("client")
        owner = f"{agent}#{client}"
        key = (room, name)
        lease = self._leases.get(key)
        if lease is not None and lease.owner == owner:  # already ours: extend it
            return await self._extend(key, lease, ttl, request_id)
        if lease is not None and claim_abandoned(
            self._abandoned, room, name, lease.agent, time.monotonic() - lease.granted
        ):
            log.info("claim lease freed", extra={"room": room, "lease": name, "agent": lease.agent})
            self._refuse_waiters_of(key, lease.agent)  # or it passes to its own next client
            self._drop(key)
            await self._persist_drop(key, lease.token, lease.agent, expired=False)
            lease = self._leases.get(key)
        held = sum(1 for held in self._leases.values() if held.agent == agent)
        held += sum(1 for queue in self._waiters.values() for w in queue if w.agent == agent)
        if held >= self._max_leases:
            raise RequestError("limit", too_many_leases(agent, self._max_leases))
        if lease is None and not self._waiters.get(key):
            return await self._grant(key, owner, agent, ttl, request_id)
        holder = lease.agent if lease is not None else "a waiting agent"
        if wait <= 0:
            raise RequestError("held", f"lease {name!r} is held by {holder}", holder=holder)
        waiter = Waiter(owner, agent, ttl, peer)
        self._waiters.setdefault(key, deque()).append(waiter)
        cycle = self._cycle_through(owner)
        if cycle:
            self._waiters[key].remove(waiter)
            raise RequestError(
                "deadlock",
                "waiting would deadlock: " + "; ".join(cycle),
                cycle=cycle,
            )
        try:
            async with asyncio.timeout(wait):
                reply = await waiter.granted
        except TimeoutError:
            queue = self._waiters.get(key)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
            if waiter.granted.done() and not waiter.granted.cancelled():
                reply = waiter.granted.result()  # granted in the same instant
            else:
                current = self._leases.get(key)
                holder = current.agent if current is not None else holder
                raise RequestError(
                    "held",
                    f"lease {name!r} is still held by {holder} after waiting {wait:g} s",
                    holder=holder,
                ) from None
        return Reply(request_id, reply.result, reply.error, reply.message)

    def _take(self, key: Key, owner: str, agent: str, ttl: float) -> StoredLease:
        """Hands the lease over, at once, with the next fencing token (recording follows)."""
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        lease = Lease(owner, agent, token, time.monotonic() + ttl)
        self._leases[key] = lease
        self._arm(key, lease)
        return StoredLease(key[0], key[1], owner, agent, token, time.time() + ttl)

    async def _grant(self, key: Key, owner: str, agent: str, ttl: float, request_id: int) -> Reply:
        return await self._record_grant(self._take(key, owner, agent, ttl), ttl, request_id)

    async def _record_grant(self, stored: StoredLease, ttl: float, request_id: int) -> Reply:
        key, agent, token = (stored.room, stored.name), stored.agent, stored.token
        await self._committer.run_blocking(partial(self._committer.store.grant_lease, stored))
        log.info(
            "lease granted", extra={"room": key[0], "lease": key[1], "agent": agent, "token": token}
        )
        return ok_reply(request_id, token=token, ttl=ttl, holder=agent)

    async def _renew(
        self, room: str, caller: Caller, request_id: int, args: dict[str, Any]
    ) -> Reply:
        name = arg_name(args, "name")
        token = arg_int(args, "token")
        ttl = arg_number(args, "ttl", MIN_TTL, MAX_TTL)
        key = (room, name)
        lease = self._held(key, token)
        caller.check_holder(name, lease.agent, lease.owner, args, "renew")
        return await self._extend(key, lease, ttl, request_id)

    async def _extend(self, key: Key, lease: Lease, ttl: float, request_id: int) -> Reply:
        """Moves the lease's expiry to `ttl` seconds from now (its holder asked)."""
        lease.expires = time.monotonic() + ttl
        self._arm(key, lease)
        store = self._committer.store
        await self._committer.run_blocking(
            partial(store.renew_lease, key[0], key[1], lease.token, time.time() + ttl)
        )
        return ok_reply(request_id, token=lease.token, ttl=ttl, holder=lease.agent)

    async def _release(
        self, room: str, caller: Caller, request_id: int, args: dict[str, Any]
    ) -> Reply:
        name = arg_name(args, "name")
        token = arg_int(args, "token")
        key = (room, name)
        lease = self._held(key, token)
        caller.check_holder(name, lease.agent, lease.owner, args, "release")
        self._drop(key)
        await self._persist_drop(key, token, lease.agent, expired=False)
        return ok_reply(request_id, released=True)

    def _held(self, key: Key, token: int) -> Lease:
        """The lease `key` if it is held under `token`, else the `lost` refusal (a token that
        changed hands means its holder lost it; who holds it now is checked after this)."""
        lease = self._leases.get(key)
        if lease is None or lease.token != token:
            raise RequestError("lost", f"lease {key[1]!r} with token {token} is no longer held")
        return lease

    def _list(self, room: str, caller: Caller, request_id: int) -> Reply:
        now = time.monotonic()
        leases = [
            {
                "name": name,
                "holder": lease.agent,
                "token": lease.token if caller.sees_token(lease.agent) else None,
                "expires_in": round(max(lease.expires - now, 0.0), 3),
                "waiting": [w.agent for w in self._waiters.get((r, name), ())],
            }
            for (r, name), lease in sorted(self._leases.items())
            if r == room
        ]
        return ok_reply(request_id, leases=leases)

    # -- expiry and hand-over --------------------------------------------------------------

    def _arm(self, key: Key, lease: Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
        delay = max(lease.expires - time.monotonic(), 0.0)
        lease.timer = asyncio.get_running_loop().call_later(delay, self._expire, key, lease.token)

    def _expire(self, key: Key, token: int) -> None:
        lease = self._leases.get(key)
        if lease is None or lease.token != token:
            return
        log.info("lease expired", extra={"room": key[0], "lease": key[1], "agent": lease.agent})
        self._drop(key)
        self._spawn(self._persist_drop(key, token, lease.agent, expired=True))

    def _refuse_waiters_of(self, key: Key, agent: str) -> None:
        """Takes `agent`'s waits for lease `key` out of its queue, refused: a claim lease freed
        because its claim is gone must not pass to another client of the same agent."""
        queue = self._waiters.get(key)
        if queue is None:
            return
        for waiter in [w for w in queue if w.agent == agent]:
            queue.remove(waiter)
            if not waiter.granted.done():
                waiter.granted.set_exception(
                    RequestError(
                        "held",
                        f"lease {key[1]!r} was freed: the claim behind it is gone; claim again",
                        holder=agent,
                    )
                )

    def _drop(self, key: Key) -> None:
        """Frees the lease and hands it to the first live waiter."""
        lease = self._leases.pop(key, None)
        if lease is not None and lease.timer is not None:
            lease.timer.cancel()
        queue = self._waiters.get(key)
        while queue:
            waiter = queue.popleft()
            if waiter.granted.done():
                continue
            stored = self._take(key, waiter.owner, waiter.agent, waiter.ttl)  # no gap
            self._spawn(self._hand_to(stored, waiter))
            self._break_cycles(key)
            return

    async def _hand_to(self, stored: StoredLease, waiter: Waiter) -> None:
        reply = await self._record_grant(stored, waiter.ttl, 0)
        if waiter.granted.done():  # the waiter gave up meanwhile: free it again
            key = (stored.room, stored.name)
            current = self._leases.get(key)
            if current is not None and current.token == stored.token:
                self._drop(key)
                await self._persist_drop(key, stored.token, waiter.agent, expired=False)
            return
        waiter.granted.set_result(reply)

    async def _persist_drop(self, key: Key, token: int, agent: str, *, expired: bool) -> None:
        store = self._committer.store
        await self._committer.run_blocking(partial(store.drop_lease, key[0], key[1], token))
        if expired and self._on_expire is not None:
            try:
                await self._on_expire(key[0], key[1], agent)
            except Exception:
                log.exception("lease expiry hook failed")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- deadlock detection ----------------------------------------------------------------

    def _break_cycles(self, key: Key) -> None:
        """After `key` changed hands, its remaining waiters now wait for the new holder, which
        may itself be waiting for one of them: fail each waiter that now closes a cycle."""
        queue = self._waiters.get(key)
        for waiter in list(queue or ()):
            if waiter.granted.done():
                continue
            cycle = self._cycle_through(waiter.owner)
            if cycle and queue is not None:
                queue.remove(waiter)
                waiter.granted.set_result(
                    Reply(
                        0,
                        {"cycle": cycle},
                        "deadlock",
                        "waiting would deadlock: " + "; ".join(cycle),
                    )
                )

    def _cycle_through(self, owner: str) -> list[str]:
        """A cycle of waits that passes through `owner`, described, or [] if there is none."""
        holders = {key: (lease.owner, lease.agent) for key, lease in self._leases.items()}
        waits = [
            (key, w.owner, w.agent)
            for key, queue in self._waiters.items()
            for w in queue
            if not w.granted.done()
        ]
        return find_cycle(owner, holders, waits)


def find_cycle(
    owner: str,
    holders: dict[Key, tuple[str, str]],
    waits: list[tuple[Key, str, str]],
) -> list[str]:
    """A cycle in the wait-for graph that passes through `owner`, described step by step, or []
    if there is none. `holders` maps a lease to its (owner, agent); `waits` lists who (owner,
    agent) waits for which lease. Owners are "agent#client id"."""
    edges: dict[str, list[tuple[str, str, str]]] = {}
    agents = {w_owner: agent for _, w_owner, agent in waits}
    agents.update(dict(holders.values()))
    for key, w_owner, _ in waits:
        holder = holders.get(key)
        if holder is not None:
            edges.setdefault(w_owner, []).append((key[1], holder[0], holder[1]))
    path: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> bool:
        for name, holder, holder_agent in edges.get(node, []):
            path.append(f"{agents.get(node, node)} waits for {name!r} held by {holder_agent}")
            if holder == owner:
                return True
            if holder not in seen:
                seen.add(holder)
                if visit(holder):
                    return True
            path.pop()
        return False

    return path if visit(owner) else []


def arg_name(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise RequestError("invalid", f"{key} must be a str of 1..{MAX_NAME} characters")
    return value


def arg_int(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError("invalid", f"{key} must be an int")
    return value


def arg_number(
    args: dict[str, Any], key: str, low: float, high: float, default: float | None = None
) -> float:
    value = args.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError("invalid", f"{key} must be a number from {low:g} to {high:g}")
    return float(value)

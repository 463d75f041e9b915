"""`Coordinator`: what the hub and its rooms ask of coordination (leases with fencing tokens,
fair waiting with deadlock detection, unique numbers), however it is decided.

Two coordinators implement it: `LocalCoordinator` (`crdtdoc.server.local_coordination`: one hub,
decided on its event loop and recorded in SQLite) and `SharedCoordinator`
(`crdtdoc.server.shared_coordination`: several hubs, decided in PostgreSQL). The hub, its rooms
and guarded commits use only this interface. What the two share is written here once: a request
is authorized (`crdtdoc.server.coordination_rules`) and dispatched to its operation, a refusal
becomes the reply, a task-claim lease whose claim is gone may be freed (`CLAIM_GRACE_SECONDS`),
one agent holds or waits for at most `max_leases_per_agent` leases, and the expiry hook runs in
the background, its failures logged.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import (
    Acquire,
    ListLeases,
    NextNumber,
    Release,
    Renew,
    ReplyCode,
    RequestError,
    parse_request,
)
from crdtdoc.server.coordination_rules import Caller, Requester, ok_reply

log = logging.getLogger("crdtdoc.hub.coordination")

ExpiryHook = Callable[[str, str, str], Awaitable[None]]
"""Called with (room, lease name, agent) when a lease expires without being released."""
AbandonedHook = Callable[[str, str, str], bool]
"""(room, lease name, holder) -> whether the holder gave the lease's purpose up: a task claim
whose record in the task list is gone (someone completed or reopened the task)."""
CLAIM_GRACE_SECONDS = 10.0
"""A new claim lease is never judged abandoned: its record is written just after the grant."""

MAX_LEASES_PER_AGENT = 1000
"""Leases one agent may hold or wait for at once, over every room of a hub (the default of
`--max-leases-per-agent`): each costs the hub memory and a timer until it expires."""


class Coordinator(ABC):
    """Coordination for every room of a hub (see the module docstring). `handle` answers the
    requests; the operations behind it are the implementation's."""

    def __init__(
        self,
        on_expire: ExpiryHook | None,
        *,
        max_leases_per_agent: int,
        abandoned: AbandonedHook | None,
    ) -> None:
        self._on_expire = on_expire
        self._abandoned = abandoned
        self._max_leases = max_leases_per_agent
        self._tasks: set[asyncio.Task[None]] = set()

    @abstractmethod
    async def load(self) -> None:
        """Gets ready to answer, before the hub accepts connections."""

    @abstractmethod
    async def close(self) -> None:
        """Stops what runs in the background, before the hub closes its store."""

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
            caller.check_may(op)
            request = parse_request(op, args)
            caller.check_scope(request)
            match request:
                case Acquire():
                    result = await self._acquire(room, peer, caller.agent, request)
                case Renew():
                    result = await self._renew(room, caller, request)
                case Release():
                    result = await self._release(room, caller, request)
                case ListLeases():
                    result = await self._list(room, caller)
                case NextNumber():
                    result = {"value": await self._next(room, request.sequence)}
        except RequestError as exc:
            return Reply(request_id, exc.details, exc.code, str(exc))
        return ok_reply(request_id, **result)

    @abstractmethod
    def forget(self, peer: object) -> None:
        """The peer disconnected: it waits for nothing any more."""

    @abstractmethod
    def fence_refusal(self, room: str, name: str, token: int, writer: str | None) -> str | None:
        """Why a write by `writer` fenced with `token` for lease `name` is refused now, or None
        if it may pass (`crdtdoc.server.coordination_rules.fence_refusal`), decided at once:
        what a guarded commit on one hub asks."""

    # -- the operations, authorized by `handle`; a refusal raises `RequestError` -------------

    @abstractmethod
    async def _acquire(
        self, room: str, peer: object, agent: str, request: Acquire
    ) -> dict[str, Any]:
        """Takes lease `name` for `agent` (extends it if its client holds it already), or
        waits up to `wait` seconds in line for it."""

    @abstractmethod
    async def _renew(self, room: str, caller: Caller, request: Renew) -> dict[str, Any]:
        """Extends a lease its holder presents with its token."""

    @abstractmethod
    async def _release(self, room: str, caller: Caller, request: Release) -> dict[str, Any]:
        """Frees a lease its holder presents with its token, for the next waiter."""

    @abstractmethod
    async def _list(self, room: str, caller: Caller) -> dict[str, Any]:
        """The room's leases, their waiters, and tokens shown to their holders only."""

    @abstractmethod
    async def _next(self, room: str, name: str) -> int:
        """Draws the next number of sequence `name`."""

    # -- shared by the implementations ----------------------------------------------------

    def _claim_abandoned(self, room: str, name: str, agent: str, held_for: float) -> bool:
        """Whether a new acquire may free lease `name`, held by `agent` for `held_for` seconds:
        past the grace, its claim record is gone (the bare lease would refuse every new claim,
        naming a holder no list shows)."""
        hook = self._abandoned
        return hook is not None and held_for > CLAIM_GRACE_SECONDS and hook(room, name, agent)

    def _too_many(self, agent: str) -> RequestError:
        """The refusal of an acquire by an agent that holds or waits for its limit of leases."""
        return RequestError(
            ReplyCode.LIMIT,
            f"{agent} already holds or waits for {self._max_leases} leases "
            "(--max-leases-per-agent): release some first",
        )

    async def _expired(self, room: str, name: str, agent: str) -> None:
        """Runs the expiry hook for a lease that ran out; a failing hook is logged."""
        if self._on_expire is None:
            return
        try:
            await self._on_expire(room, name, agent)
        except Exception:
            log.exception("lease expiry hook failed")

    def _spawn(self, coro: Awaitable[None]) -> None:
        """Runs `coro` in the background, keeping it referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

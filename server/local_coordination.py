"""`LocalCoordinator`: leases with fencing tokens, fair waiting with deadlock detection, and
unique numbers, for every room of one hub (the `Coordinator` of a hub on SQLite).

Linearizable per hub: every decision is taken on the hub's event loop, in the order requests
arrive, and recorded in the store before the requester is told. A fencing token strictly increases
each time a lease changes hands, and the newest token of every lease name is stored with the
grant, so neither a restart nor a crash can hand out a token twice or let two agents hold one
lease. Expiry uses the hub's clock: a holder that stops renewing (it crashed, or it is cut off)
loses the lease when its TTL runs out, and the next waiter gets it with a higher token.

Requests are authorized before they get here (`crdtdoc.server.coordination_rules`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from crdtdoc.protocol.requests import Acquire, Release, Renew, ReplyCode, RequestError
from crdtdoc.server.coordination import (
    MAX_LEASES_PER_AGENT,
    AbandonedHook,
    Coordinator,
    ExpiryHook,
)
from crdtdoc.server.coordination_rules import Caller, Key, fence_refusal
from crdtdoc.server.store import SqliteCommitter, StoredLease
from crdtdoc.server.wait_graph import deadlock_refusal, find_cycle

log = logging.getLogger("crdtdoc.hub.coordination")


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
    granted: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class LocalCoordinator(Coordinator):
    """Coordination state for all rooms of one hub (see the module docstring)."""

    def __init__(
        self,
        committer: SqliteCommitter,
        on_expire: ExpiryHook | None = None,
        *,
        max_leases_per_agent: int = MAX_LEASES_PER_AGENT,
        abandoned: AbandonedHook | None = None,
    ) -> None:
        super().__init__(on_expire, max_leases_per_agent=max_leases_per_agent, abandoned=abandoned)
        self._committer = committer
        self._leases: dict[Key, Lease] = {}
        self._tokens: dict[Key, int] = {}
        self._waiters: dict[Key, deque[Waiter]] = {}

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

    async def close(self) -> None:
        """Nothing to stop: the state lives on the event loop, and its writes are queued on the
        store's committer, which the hub closes next."""

    def fence_refusal(self, room: str, name: str, token: int, writer: str | None) -> str | None:
        lease = self._leases.get((room, name))
        holder = lease.agent if lease else None
        return fence_refusal(name, token, self._tokens.get((room, name), 0), holder, writer)

    def forget(self, peer: object) -> None:
        for queue in self._waiters.values():
            for waiter in list(queue):
                if waiter.peer is peer:
                    queue.remove(waiter)
                    waiter.granted.cancel()

    # -- operations ------------------------------------------------------------------------

    async def _acquire(
        self, room: str, peer: object, agent: str, request: Acquire
    ) -> dict[str, Any]:
        name, ttl, wait = request.name, request.ttl, request.wait
        owner = f"{agent}#{request.client}"
        key = (room, name)
        lease = self._leases.get(key)
        if lease is not None and lease.owner == owner:  # already ours: extend it
            return await self._extend(key, lease, ttl)
        if lease is not None and self._claim_abandoned(
            room, name, lease.agent, time.monotonic() - lease.granted
        ):
            log.info("claim lease freed", extra={"room": room, "lease": name, "agent": lease.agent})
            self._refuse_waiters_of(key, lease.agent)  # or it passes to its own next client
            self._drop(key)
            await self._persist_drop(key, lease.token, lease.agent, expired=False)
            lease = self._leases.get(key)
        held = sum(1 for held in self._leases.values() if held.agent == agent)
        held += sum(1 for queue in self._waiters.values() for w in queue if w.agent == agent)
        if held >= self._max_leases:
            raise self._too_many(agent)
        if lease is None and not self._waiters.get(key):
            return await self._record_grant(self._take(key, owner, agent, ttl), ttl)
        holder = lease.agent if lease is not None else "a waiting agent"
        if wait <= 0:
            raise RequestError(ReplyCode.HELD, f"lease {name!r} is held by {holder}", holder=holder)
        waiter = Waiter(owner, agent, ttl, peer)
        self._waiters.setdefault(key, deque()).append(waiter)
        cycle = self._cycle_through(owner)
        if cycle:
            self._waiters[key].remove(waiter)
            raise deadlock_refusal(cycle)
        try:
            async with asyncio.timeout(wait):
                return await waiter.granted  # or the refusal it was failed with
        except TimeoutError:
            queue = self._waiters.get(key)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
            if waiter.granted.done() and not waiter.granted.cancelled():
                return waiter.granted.result()  # decided in the same instant
            current = self._leases.get(key)
            holder = current.agent if current is not None else holder
            raise RequestError(
                ReplyCode.HELD,
                f"lease {name!r} is still held by {holder} after waiting {wait:g} s",
                holder=holder,
            ) from None

    def _take(self, key: Key, owner: str, agent: str, ttl: float) -> StoredLease:
        """Hands the lease over, at once, with the next fencing token (recording follows)."""
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        lease = Lease(owner, agent, token, time.monotonic() + ttl)
        self._leases[key] = lease
        self._arm(key, lease)
        return StoredLease(key[0], key[1], owner, agent, token, time.time() + ttl)

    async def _record_grant(self, stored: StoredLease, ttl: float) -> dict[str, Any]:
        key, agent, token = (stored.room, stored.name), stored.agent, stored.token
        await self._committer.run_blocking(partial(self._committer.store.grant_lease, stored))
        log.info(
            "lease granted", extra={"room": key[0], "lease": key[1], "agent": agent, "token": token}
        )
        return {"token": token, "ttl": ttl, "holder": agent}

    async def _renew(self, room: str, caller: Caller, request: Renew) -> dict[str, Any]:
        name, token, ttl = request.name, request.token, request.ttl
        key = (room, name)
        lease = self._held(key, token)
        caller.check_holder(name, lease.agent, lease.owner, request.client, "renew")
        return await self._extend(key, lease, ttl)

    async def _extend(self, key: Key, lease: Lease, ttl: float) -> dict[str, Any]:
        """Moves the lease's expiry to `ttl` seconds from now (its holder asked)."""
        lease.expires = time.monotonic() + ttl
        self._arm(key, lease)
        store = self._committer.store
        await self._committer.run_blocking(
            partial(store.renew_lease, key[0], key[1], lease.token, time.time() + ttl)
        )
        return {"token": lease.token, "ttl": ttl, "holder": lease.agent}

    async def _release(self, room: str, caller: Caller, request: Release) -> dict[str, Any]:
        name, token = request.name, request.token
        key = (room, name)
        lease = self._held(key, token)
        caller.check_holder(name, lease.agent, lease.owner, request.client, "release")
        self._drop(key)
        await self._persist_drop(key, token, lease.agent, expired=False)
        return {"released": True}

    def _held(self, key: Key, token: int) -> Lease:
        """The lease `key` if it is held under `token`, else the `lost` refusal (a token that
        changed hands means its holder lost it; who holds it now is checked after this)."""
        lease = self._leases.get(key)
        if lease is None or lease.token != token:
            raise RequestError(
                ReplyCode.LOST, f"lease {key[1]!r} with token {token} is no longer held"
            )
        return lease

    async def _list(self, room: str, caller: Caller) -> dict[str, Any]:
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
        return {"leases": leases}

    async def _next(self, room: str, name: str) -> int:
        store = self._committer.store
        return await self._committer.run_blocking(partial(store.next_number, room, name))

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
                        ReplyCode.HELD,
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
        granted = await self._record_grant(stored, waiter.ttl)
        if waiter.granted.done():  # the waiter gave up meanwhile: free it again
            key = (stored.room, stored.name)
            current = self._leases.get(key)
            if current is not None and current.token == stored.token:
                self._drop(key)
                await self._persist_drop(key, stored.token, waiter.agent, expired=False)
            return
        waiter.granted.set_result(granted)

    async def _persist_drop(self, key: Key, token: int, agent: str, *, expired: bool) -> None:
        store = self._committer.store
        await self._committer.run_blocking(partial(store.drop_lease, key[0], key[1], token))
        if expired:
            await self._expired(key[0], key[1], agent)

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
                waiter.granted.set_exception(deadlock_refusal(cycle))

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

"""`SharedCoordinator`: leases, fencing tokens, fair waiting and unique numbers for several hubs,
decided in PostgreSQL.

Why this is linearizable: every operation on a room's leases runs in one transaction that first
takes that room's advisory lock (`pg_advisory_xact_lock`), so all such operations, from every
hub, happen one at a time in some order, and each sees everything the previous ones committed.
Time comes from one clock, the database's `now()`, so hubs with drifting clocks cannot disagree
about whether a lease has expired. A fencing token is the newest value of a counter row that
only ever goes up (`crdtdoc_fencing`), incremented in the transaction that grants the lease; a
guarded commit reads that row under a share lock in the transaction that stores its write
(`Room._commit_shared`), so a write carrying an old token can never land after a newer grant.
Unique numbers are one `INSERT .. ON CONFLICT DO UPDATE .. RETURNING`: the row lock makes
concurrent draws take turns.

Waiting is a queue table (`crdtdoc_waiters`), first come first served. When a lease is freed
(released, or expired) the transaction that frees it hands it straight to the first live waiter,
as on a single hub, then checks the remaining waiters for deadlock. The waiter's hub learns of the
grant from a Redis message, or within `poll_seconds` by reading the table, so a lost message
delays a hand-over but never loses it. Expired leases are swept every `poll_seconds` by whichever
hub gets there first; the room lock makes sure one sweep runs the expiry hook (for task claims:
the hub drops the claim). A claim lease whose record is gone is freed by the next acquire, in its
locked transaction, as on a single hub (`claim_abandoned`, its grace timed by `granted_at`).

A waiter whose hub dies stays in the queue until its wait runs out; if the lease is handed to it
first, the lease expires unrenewed after its TTL and moves on.

Requests are authorized as on a single hub (`crdtdoc.server.coordination_rules.Caller`): read-only
tokens change nothing, only the holder (the stored `agent`, and without a secret the `owner`'s
client) renews or releases, `leases` shows tokens to their holder only, and
`crdtdoc.server.lease_tables.fence_refusal_in` passes only the newest token issued (the fenced
commit must call it inside its transaction). The statements on the tables are in
`crdtdoc.server.lease_tables`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from crdtdoc.errors import StorageError
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import Acquire, Release, Renew, ReplyCode, RequestError
from crdtdoc.server.cluster import Cluster
from crdtdoc.server.coordination import (
    MAX_LEASES_PER_AGENT,
    AbandonedHook,
    Coordinator,
    ExpiryHook,
)
from crdtdoc.server.coordination_rules import Caller, Key, Requester
from crdtdoc.server.lease_tables import (
    DEADLOCK,
    GRANTED,
    Effects,
    expire_in,
    fence_refusal_in,
    free_claim,
    grant,
    graph_of,
    hand_over,
    holder_of,
    lease_of,
    live_waiters,
    lock_room,
)
from crdtdoc.server.pgstore import PostgresStore
from crdtdoc.server.wait_graph import deadlock_refusal, find_cycle

log = logging.getLogger("crdtdoc.hub.coordination")


@dataclass
class _Wait:
    """A request of this hub's that waits in the queue table."""

    id: int
    key: Key
    peer: object
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    forgotten: bool = False


class SharedCoordinator(Coordinator):
    """Coordination for every hub on one database (see the module docstring)."""

    def __init__(
        self,
        store: PostgresStore,
        cluster: Cluster,
        on_expire: ExpiryHook | None = None,
        *,
        poll_seconds: float = 0.25,
        max_leases_per_agent: int = MAX_LEASES_PER_AGENT,
        abandoned: AbandonedHook | None = None,
    ) -> None:
        super().__init__(on_expire, max_leases_per_agent=max_leases_per_agent, abandoned=abandoned)
        self._store = store
        self._cluster = cluster
        self._poll = poll_seconds
        self._waits: dict[int, _Wait] = {}
        self._sweeper: asyncio.Task[None] | None = None
        cluster.lease_listeners.append(self._lease_changed)

    async def load(self) -> None:
        """Starts sweeping expired leases (the state itself lives in the database)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="sweeper")

    async def close(self) -> None:
        tasks = [t for t in [self._sweeper, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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
        """Answers one request from `peer` (whose hello named `agent`), authorized first; a
        failing database is answered `unavailable`."""
        try:
            return await super().handle(room, peer, agent, request_id, op, args)
        except StorageError as exc:
            log.error("coordination failed", extra={"room": room, "op": op, "error": str(exc)})
            return Reply(request_id, {}, ReplyCode.UNAVAILABLE, "the hub's database failed; retry")

    async def fence_ok(
        self, room: str, name: str, token: int, writer: str | None
    ) -> tuple[bool, str]:
        """Whether a write by `writer` fenced with `token` for lease `name` may be applied now,
        and if not, why. A commit must decide inside its own transaction instead
        (`fence_refusal_in`)."""
        async with self._store.transaction(f"check fence of lease {name!r}") as db:
            why = await fence_refusal_in(db, room, name, token, writer)
        return why is None, why or ""

    def fence_refusal(self, room: str, name: str, token: int, writer: str | None) -> str | None:
        """Refuses every fenced write: across hubs the fence is decided inside the transaction
        that stores the write (`fence_refusal_in`), never at once from this hub's memory."""
        return f"lease {name!r}: a fence across hubs is checked in the commit's transaction"

    def forget(self, peer: object) -> None:
        """The peer disconnected: its waits end (and a lease handed to one is freed again)."""
        for wait in self._waits.values():
            if wait.peer is peer:
                wait.forgotten = True
                wait.wake.set()

    # -- operations ------------------------------------------------------------------------

    async def _acquire(
        self, room: str, peer: object, agent: str, request: Acquire
    ) -> dict[str, Any]:
        name, ttl, wait = request.name, request.ttl, request.wait
        owner = f"{agent}#{request.client}"
        effects = Effects()
        refusal: RequestError | None = None
        waiter_id = 0
        async with self._locked(room, effects) as db:
            lease = await lease_of(db, room, name)
            if lease is not None and lease[0] == owner:  # already ours: extend it
                cur = await db.execute(
                    "UPDATE crdtdoc_leases SET expires_at = now() + %s * interval '1 second' "
                    "WHERE room = %s AND name = %s RETURNING token",
                    (ttl, room, name),
                )
                row = await cur.fetchone()
                return {"token": row[0] if row else 0, "ttl": ttl, "holder": agent}
            if lease is not None and self._claim_abandoned(room, name, lease[1], lease[2]):
                lease = await free_claim(db, room, name, lease[1], effects)
            cur = await db.execute(
                "SELECT (SELECT count(*) FROM crdtdoc_leases WHERE agent = %s) + "
                "(SELECT count(*) FROM crdtdoc_waiters WHERE agent = %s AND deadline > now())",
                (agent, agent),
            )
            row = await cur.fetchone()
            queued = await live_waiters(db, room, name)
            holder = lease[1] if lease is not None else "a waiting agent"
            if row is not None and row[0] >= self._max_leases:
                refusal = self._too_many(agent)
            elif lease is None and not queued:
                token = await grant(db, room, name, owner, agent, ttl)
                return {"token": token, "ttl": ttl, "holder": agent}
            elif wait <= 0:
                refusal = RequestError(
                    ReplyCode.HELD, f"lease {name!r} is held by {holder}", holder=holder
                )
            else:
                cur = await db.execute(
                    "INSERT INTO crdtdoc_waiters (room, name, owner, agent, ttl, deadline) "
                    "VALUES (%s, %s, %s, %s, %s, now() + %s * interval '1 second') RETURNING id",
                    (room, name, owner, agent, ttl, wait),
                )
                row = await cur.fetchone()
                waiter_id = row[0] if row else 0
                cycle = find_cycle(owner, *await graph_of(db, room))
                if cycle:
                    await db.execute("DELETE FROM crdtdoc_waiters WHERE id = %s", (waiter_id,))
                    refusal = deadlock_refusal(cycle)
        if refusal is not None:
            raise refusal
        return await self._wait_for(room, name, waiter_id, peer, wait, ttl, agent)

    async def _wait_for(
        self,
        room: str,
        name: str,
        waiter_id: int,
        peer: object,
        wait: float,
        ttl: float,
        agent: str,
    ) -> dict[str, Any]:
        """Waits in the queue until the lease is handed over, a deadlock fails the wait, or
        `wait` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        entry = _Wait(waiter_id, (room, name), peer)
        self._waits[waiter_id] = entry
        try:
            while not entry.forgotten:
                outcome = await self._outcome(waiter_id)
                if outcome is not None:
                    return await self._settle(room, name, waiter_id, ttl, agent, accept=True)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                entry.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(self._poll, remaining)):
                        await entry.wake.wait()
            result = await self._settle(
                room, name, waiter_id, ttl, agent, accept=not entry.forgotten
            )
        finally:
            self._waits.pop(waiter_id, None)
        if entry.forgotten:
            raise asyncio.CancelledError  # nobody to answer: the requester left
        return result

    async def _outcome(self, waiter_id: int) -> str | None:
        async with self._store.transaction("read a lease wait") as db:
            cur = await db.execute(
                "SELECT outcome FROM crdtdoc_waiters WHERE id = %s", (waiter_id,)
            )
            row = await cur.fetchone()
        return "gone" if row is None else row[0]

    async def _settle(
        self, room: str, name: str, waiter_id: int, ttl: float, agent: str, *, accept: bool
    ) -> dict[str, Any]:
        """Ends a wait: takes its outcome (a grant is kept if `accept`, else freed again) and
        removes it from the queue."""
        effects = Effects()
        granted: int | None = None
        failure: RequestError | None = None
        async with self._locked(room, effects) as db:
            cur = await db.execute(
                "DELETE FROM crdtdoc_waiters WHERE id = %s RETURNING outcome, owner",
                (waiter_id,),
            )
            row = await cur.fetchone()
            outcome, owner = (row[0], row[1]) if row is not None else (None, None)
            if outcome == GRANTED:
                cur = await db.execute(
                    "SELECT token FROM crdtdoc_leases WHERE room = %s AND name = %s AND owner = %s",
                    (room, name, owner),
                )
                lease = await cur.fetchone()
                if lease is not None and accept:
                    granted = lease[0]
                elif lease is not None:  # handed over as the requester left: free it again
                    await db.execute(
                        "DELETE FROM crdtdoc_leases WHERE room = %s AND name = %s AND token = %s",
                        (room, name, lease[0]),
                    )
                    await hand_over(db, room, name, effects)
            elif outcome is not None and outcome.startswith(DEADLOCK):
                failure = deadlock_refusal(json.loads(outcome[len(DEADLOCK) :]))
            if granted is None and failure is None:
                cur = await db.execute(
                    "SELECT agent FROM crdtdoc_leases WHERE room = %s AND name = %s",
                    (room, name),
                )
                holder_row = await cur.fetchone()
                holder = holder_row[0] if holder_row else "a waiting agent"
                failure = RequestError(
                    ReplyCode.HELD, f"lease {name!r} is still held by {holder}", holder=holder
                )
        if granted is not None:
            return {"token": granted, "ttl": ttl, "holder": agent}
        if failure is None:  # unreachable: one of the two is always set
            failure = RequestError(ReplyCode.HELD, f"lease {name!r} is held")
        raise failure

    async def _renew(self, room: str, caller: Caller, request: Renew) -> dict[str, Any]:
        name, token, ttl = request.name, request.token, request.ttl
        async with self._locked(room, Effects()) as db:
            holder = await holder_of(db, room, caller, name, token, request.client, "renew")
            if not isinstance(holder, RequestError):
                await db.execute(
                    "UPDATE crdtdoc_leases SET expires_at = now() + %s * interval '1 second' "
                    "WHERE room = %s AND name = %s AND token = %s",
                    (ttl, room, name, token),
                )
        if isinstance(holder, RequestError):
            raise holder  # after the commit, which keeps what the sweep expired meanwhile
        return {"token": token, "ttl": ttl, "holder": holder}

    async def _release(self, room: str, caller: Caller, request: Release) -> dict[str, Any]:
        name, token = request.name, request.token
        effects = Effects()
        async with self._locked(room, effects) as db:
            holder = await holder_of(db, room, caller, name, token, request.client, "release")
            if not isinstance(holder, RequestError):
                await db.execute(
                    "DELETE FROM crdtdoc_leases WHERE room = %s AND name = %s AND token = %s",
                    (room, name, token),
                )
                await hand_over(db, room, name, effects)
        if isinstance(holder, RequestError):
            raise holder  # after the commit, which keeps what the sweep expired meanwhile
        return {"released": True}

    async def _list(self, room: str, caller: Caller) -> dict[str, Any]:
        async with self._locked(room, Effects()) as db:
            cur = await db.execute(
                "SELECT name, agent, token, "
                "greatest(extract(epoch FROM expires_at - now()), 0)::float "
                "FROM crdtdoc_leases WHERE room = %s ORDER BY name",
                (room,),
            )
            leases = await cur.fetchall()
            cur = await db.execute(
                "SELECT name, agent FROM crdtdoc_waiters WHERE room = %s AND outcome IS NULL "
                "AND deadline > now() ORDER BY id",
                (room,),
            )
            waiting: dict[str, list[str]] = {}
            for name, agent in await cur.fetchall():
                waiting.setdefault(name, []).append(agent)
        return {
            "leases": [
                {
                    "name": name,
                    "holder": agent,
                    "token": token if caller.sees_token(agent) else None,
                    "expires_in": round(expires_in, 3),
                    "waiting": waiting.get(name, []),
                }
                for name, agent, token, expires_in in leases
            ]
        }

    async def _next(self, room: str, name: str) -> int:
        async with self._store.transaction(f"advance sequence {name!r}") as db:
            cur = await db.execute(
                "INSERT INTO crdtdoc_sequences AS s VALUES (%s, %s, 1) ON CONFLICT (room, name) "
                "DO UPDATE SET value = s.value + 1 RETURNING value",
                (room, name),
            )
            row = await cur.fetchone()
        if row is None:
            raise RequestError(ReplyCode.INTERNAL, f"sequence {name!r} returned no value")
        return int(row[0])

    # -- transactions, hand-over, expiry ---------------------------------------------------

    @asynccontextmanager
    async def _locked(self, room: str, effects: Effects) -> AsyncIterator[AsyncConnection]:
        """A transaction holding the room's coordination lock, with expired leases swept first;
        after it commits, other hubs hear of changed leases and expiry hooks run."""
        async with self._store.transaction(f"coordinate in room {room!r}") as db:
            await lock_room(db, room)
            await expire_in(db, room, effects)
            yield db
        self._after(effects)

    def _after(self, effects: Effects) -> None:
        for room, name in effects.changed:
            self._cluster.publish_lease(room, name)
            self._lease_changed(room, name)
        for room, name, agent in effects.expired:
            if self._on_expire is not None:
                self._spawn(self._expired(room, name, agent))

    def _lease_changed(self, room: str, name: str) -> None:
        for wait in self._waits.values():
            if wait.key == (room, name):
                wait.wake.set()

    async def _sweep_loop(self) -> None:
        """Expires leases whose TTL ran out, in every room, now and then."""
        while True:
            await asyncio.sleep(self._poll)
            try:
                async with self._store.transaction("find expired leases") as db:
                    cur = await db.execute(
                        "SELECT DISTINCT room FROM crdtdoc_leases WHERE expires_at <= now()"
                    )
                    rooms = [r for (r,) in await cur.fetchall()]
                for room in rooms:
                    async with self._locked(room, Effects()):
                        pass  # _locked sweeps
            except Exception as exc:
                log.warning("lease sweep failed", extra={"error": str(exc)})

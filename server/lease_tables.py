"""The rows shared coordination decides on, in PostgreSQL (`crdtdoc_leases`, `crdtdoc_fencing`,
`crdtdoc_waiters`; `crdtdoc.server.pgstore` creates them), and what every change to them brings
along: a freed lease goes to the first live waiter (`hand_over`), whose remaining queue is checked
for deadlocks; expired leases are swept first (`expire_in`).

Each function works inside its caller's transaction, which holds the room's coordination lock
(`lock_room`, taken by `SharedCoordinator._locked`), except `fence_refusal_in`, which a guarded
commit calls inside the transaction that stores its write. What a transaction changed is noted
in `Effects`, for the coordinator to announce once it commits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from psycopg import AsyncConnection

from crdtdoc.protocol.requests import ReplyCode, RequestError
from crdtdoc.server.coordination_rules import Caller, Key, fence_refusal
from crdtdoc.server.wait_graph import find_cycle

log = logging.getLogger("crdtdoc.hub.coordination")

GRANTED = "granted"
"""A wait's outcome once the lease was handed to it."""
DEADLOCK = "deadlock:"
"""The prefix of a wait's outcome once it was failed for closing a cycle (the cycle follows, as
JSON)."""


@dataclass
class Effects:
    """What a transaction did that others must hear of once it commits."""

    changed: set[Key] = field(default_factory=set)  # leases that changed hands or were freed
    expired: list[tuple[str, str, str]] = field(default_factory=list)  # (room, name, agent)


async def lock_room(db: AsyncConnection, room: str) -> None:
    """Takes the room's coordination lock until `db`'s transaction ends: every operation on the
    room's leases, from every hub, runs under it, one at a time."""
    await db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('crdtdoc.coord:' || %s, 0))", (room,)
    )


async def grant(
    db: AsyncConnection, room: str, name: str, owner: str, agent: str, ttl: float
) -> int:
    """Records `owner` as the holder with the lease's next fencing token; returns the token."""
    cur = await db.execute(
        "INSERT INTO crdtdoc_fencing AS f VALUES (%s, %s, 1) ON CONFLICT (room, name) "
        "DO UPDATE SET token = f.token + 1 RETURNING token",
        (room, name),
    )
    row = await cur.fetchone()
    token = int(row[0]) if row else 0
    await db.execute(
        "INSERT INTO crdtdoc_leases (room, name, owner, agent, token, expires_at, granted_at) "
        "VALUES (%s, %s, %s, %s, %s, now() + %s * interval '1 second', clock_timestamp())",
        (room, name, owner, agent, token, ttl),
    )
    log.info("lease granted", extra={"room": room, "lease": name, "agent": agent, "token": token})
    return token


async def lease_of(db: AsyncConnection, room: str, name: str) -> tuple[str, str, float] | None:
    """(owner, agent, seconds since the grant) of lease `name`, if held."""
    cur = await db.execute(
        "SELECT owner, agent, extract(epoch FROM clock_timestamp() - granted_at)::float "
        "FROM crdtdoc_leases WHERE room = %s AND name = %s",
        (room, name),
    )
    row = await cur.fetchone()
    return (str(row[0]), str(row[1]), float(row[2])) if row is not None else None


async def holder_of(
    db: AsyncConnection,
    room: str,
    caller: Caller,
    name: str,
    token: int,
    client: int | None,
    action: str,
) -> str | RequestError:
    """The agent holding lease `name` under `token` if `caller` is that holder (the room is
    locked); else the refusal, returned: `lost` when no lease is held under that token any more,
    `forbidden` when someone else holds it."""
    cur = await db.execute(
        "SELECT owner, agent FROM crdtdoc_leases WHERE room = %s AND name = %s AND token = %s",
        (room, name, token),
    )
    row = await cur.fetchone()
    if row is None:
        return RequestError(ReplyCode.LOST, f"lease {name!r} with token {token} is no longer held")
    owner, agent = str(row[0]), str(row[1])
    try:
        caller.check_holder(name, agent, owner, client, action)
    except RequestError as refusal:
        return refusal
    return agent


async def fence_refusal_in(
    db: AsyncConnection, room: str, name: str, token: int, writer: str | None
) -> str | None:
    """Why a write by `writer` fenced with `token` for lease `name` is refused, or None: decided
    inside the caller's transaction `db`, which it keeps from changing (a share lock on the
    lease's fencing row), so no newer grant can land before the write commits. Only the holder
    of the lease under the newest token issued passes (see
    `crdtdoc.server.coordination_rules.fence_refusal`).
    """
    cur = await db.execute(
        "SELECT token FROM crdtdoc_fencing WHERE room = %s AND name = %s FOR SHARE",
        (room, name),
    )
    row = await cur.fetchone()
    newest = int(row[0]) if row is not None else 0
    cur = await db.execute(
        "SELECT agent FROM crdtdoc_leases WHERE room = %s AND name = %s AND token = %s "
        "AND expires_at > now()",
        (room, name, newest),
    )
    holder = await cur.fetchone()
    return fence_refusal(
        name, token, newest, str(holder[0]) if holder is not None else None, writer
    )


async def live_waiters(db: AsyncConnection, room: str, name: str) -> list[tuple[int, str]]:
    """(id, owner) of every wait for lease `name` still undecided and in time, first come
    first."""
    cur = await db.execute(
        "SELECT id, owner FROM crdtdoc_waiters WHERE room = %s AND name = %s "
        "AND outcome IS NULL AND deadline > now() ORDER BY id",
        (room, name),
    )
    return [(i, o) for i, o in await cur.fetchall()]


async def graph_of(
    db: AsyncConnection, room: str
) -> tuple[dict[Key, tuple[str, str]], list[tuple[Key, str, str]]]:
    """The room's wait-for graph, as `find_cycle` takes it."""
    cur = await db.execute("SELECT name, owner, agent FROM crdtdoc_leases WHERE room = %s", (room,))
    holders = {(room, n): (o, a) for n, o, a in await cur.fetchall()}
    cur = await db.execute(
        "SELECT name, owner, agent FROM crdtdoc_waiters WHERE room = %s AND outcome IS NULL "
        "AND deadline > now() ORDER BY id",
        (room,),
    )
    waits = [((room, n), o, a) for n, o, a in await cur.fetchall()]
    return holders, waits


async def expire_in(db: AsyncConnection, room: str, effects: Effects) -> None:
    """Frees the room's leases whose time ran out, each for its first waiter."""
    cur = await db.execute(
        "DELETE FROM crdtdoc_leases WHERE room = %s AND expires_at <= now() RETURNING name, agent",
        (room,),
    )
    for name, agent in await cur.fetchall():
        log.info("lease expired", extra={"room": room, "lease": name, "agent": agent})
        effects.expired.append((room, name, agent))
        await hand_over(db, room, name, effects)


async def hand_over(db: AsyncConnection, room: str, name: str, effects: Effects) -> None:
    """The lease is free: give it to the first live waiter, then fail any remaining waiter
    that now closes a cycle of waits."""
    effects.changed.add((room, name))
    cur = await db.execute(
        "SELECT id, owner, agent, ttl FROM crdtdoc_waiters WHERE room = %s AND name = %s "
        "AND outcome IS NULL AND deadline > now() ORDER BY id LIMIT 1",
        (room, name),
    )
    first = await cur.fetchone()
    if first is None:
        return
    waiter_id, owner, agent, ttl = first
    await grant(db, room, name, owner, agent, ttl)
    await db.execute("UPDATE crdtdoc_waiters SET outcome = %s WHERE id = %s", (GRANTED, waiter_id))
    for other_id, other_owner in await live_waiters(db, room, name):
        cycle = find_cycle(other_owner, *await graph_of(db, room))
        if cycle:
            await db.execute(
                "UPDATE crdtdoc_waiters SET outcome = %s WHERE id = %s",
                (DEADLOCK + json.dumps(cycle), other_id),
            )


async def free_claim(
    db: AsyncConnection, room: str, name: str, agent: str, effects: Effects
) -> tuple[str, str, float] | None:
    """Frees the claim lease `agent` holds, whose record is gone (the room is locked), for
    the first waiter if any; returns the lease as it is now."""
    log.info("claim lease freed", extra={"room": room, "lease": name, "agent": agent})
    await db.execute("DELETE FROM crdtdoc_leases WHERE room = %s AND name = %s", (room, name))
    await db.execute(  # not to another client of that agent: those waits end, refused
        "DELETE FROM crdtdoc_waiters WHERE room = %s AND name = %s AND agent = %s",
        (room, name, agent),
    )
    await hand_over(db, room, name, effects)
    return await lease_of(db, room, name)

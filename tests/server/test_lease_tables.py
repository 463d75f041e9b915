"""The PostgreSQL rows shared coordination decides on (`crdtdoc.server.lease_tables`), driven
function by function inside transactions of a real `PostgresStore` (which creates the tables):
tokens that only grow, who holds a lease under which token, the fence read under a lock that
holds off a newer grant, the room lock, and what a freed lease brings along (the first live
waiter granted, waiters closing a cycle failed, expired leases swept, an abandoned claim freed
for another agent only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from psycopg import AsyncConnection

from crdtdoc.protocol.requests import RequestError
from crdtdoc.server.coordination_rules import Caller
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
from tests.support.aio import run

T = TypeVar("T")
Tx = Callable[[AsyncConnection], Awaitable[T]]


@asynccontextmanager
async def opened(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def in_tx(store: PostgresStore, work: Tx[T]) -> T:
    async with store.transaction("test") as db:
        return await work(db)


async def wait_for(
    db: AsyncConnection, name: str, owner: str, ttl: float = 30, deadline_s: float = 60
) -> int:
    """Puts `owner` in line for lease `name` of room "r" (what `SharedCoordinator` writes)."""
    cur = await db.execute(
        "INSERT INTO crdtdoc_waiters (room, name, owner, agent, ttl, deadline) "
        "VALUES ('r', %s, %s, %s, %s, now() + %s * interval '1 second') RETURNING id",
        (name, owner, owner.split("#")[0], ttl, deadline_s),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def outcomes(db: AsyncConnection) -> dict[int, Any]:
    cur = await db.execute("SELECT id, outcome FROM crdtdoc_waiters")
    return dict(await cur.fetchall())


async def expire_now(db: AsyncConnection, name: str) -> None:
    await db.execute(
        "UPDATE crdtdoc_leases SET expires_at = now() - interval '1 second' "
        "WHERE room = 'r' AND name = %s",
        (name,),
    )


def test_grants_record_the_holder_with_a_token_that_only_grows(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                assert await lease_of(db, "r", "L") is None
                assert await grant(db, "r", "L", "ann#1", "ann", 30) == 1
                owner, agent, held_for = await lease_of(db, "r", "L") or ("", "", -1.0)
                assert (owner, agent) == ("ann#1", "ann") and 0 <= held_for < 5
                await db.execute("DELETE FROM crdtdoc_leases")  # released
                assert await grant(db, "r", "L", "bob#1", "bob", 30) == 2
                assert await grant(db, "r", "M", "bob#1", "bob", 30) == 1  # per name
                assert await grant(db, "other", "L", "cy#1", "cy", 30) == 1  # per room

            await in_tx(store, work)

    run(body())


def test_holder_of_returns_the_holder_or_the_refusal(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                await grant(db, "r", "L", "ann#1", "ann", 30)
                ann = Caller("ann", authenticated=False, read_only=False)
                assert await holder_of(db, "r", ann, "L", 1, 1, "renew") == "ann"
                lost = await holder_of(db, "r", ann, "L", 2, 1, "renew")
                assert isinstance(lost, RequestError) and lost.code == "lost"
                assert str(lost) == "lease 'L' with token 2 is no longer held"
                bob = Caller("bob", authenticated=False, read_only=False)
                stolen = await holder_of(db, "r", bob, "L", 1, None, "release")
                assert isinstance(stolen, RequestError) and stolen.code == "forbidden"
                other_client = await holder_of(db, "r", ann, "L", 1, 2, "release")
                assert isinstance(other_client, RequestError) and "client 2" in str(other_client)

            await in_tx(store, work)

    run(body())


def test_the_fence_is_the_newest_token_of_a_live_holder(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                never = await fence_refusal_in(db, "r", "L", 1, "ann")
                assert never is not None and "it was never taken" in never
                await grant(db, "r", "L", "ann#1", "ann", 30)
                assert await fence_refusal_in(db, "r", "L", 1, "ann") is None
                assert "not by bob" in (await fence_refusal_in(db, "r", "L", 1, "bob") or "")
                assert "never issued" in (await fence_refusal_in(db, "r", "L", 2, "ann") or "")
                await expire_now(db, "L")  # ran out, not swept yet: fences nobody
                assert "not held any more" in (await fence_refusal_in(db, "r", "L", 1, "ann") or "")
                await db.execute("DELETE FROM crdtdoc_leases")
                await grant(db, "r", "L", "bob#1", "bob", 30)
                stale = await fence_refusal_in(db, "r", "L", 1, "ann")
                assert stale is not None and "(now held by bob)" in stale

            await in_tx(store, work)

    run(body())


def test_a_fence_read_holds_off_a_newer_grant_until_its_write_commits(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:
            await in_tx(store, lambda db: grant(db, "r", "L", "ann#1", "ann", 30))
            await in_tx(store, lambda db: db.execute("DELETE FROM crdtdoc_leases"))
            fenced, release = asyncio.Event(), asyncio.Event()

            async def writer(db: AsyncConnection) -> None:
                await db.execute("SELECT 1")
                assert await fence_refusal_in(db, "r", "L", 1, "ann") is not None  # released
                fenced.set()
                await release.wait()

            writing = asyncio.ensure_future(in_tx(store, writer))
            await fenced.wait()
            granting = asyncio.ensure_future(
                in_tx(store, lambda db: grant(db, "r", "L", "bob#1", "bob", 30))
            )
            await asyncio.sleep(0.3)
            assert not granting.done()  # the fencing row is share-locked by the write
            release.set()
            await writing
            assert await asyncio.wait_for(granting, 5) == 2

    run(body())


def test_the_room_lock_serializes_one_room_only(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:
            locked, release = asyncio.Event(), asyncio.Event()

            async def holder(db: AsyncConnection) -> None:
                await lock_room(db, "r")
                locked.set()
                await release.wait()

            holding = asyncio.ensure_future(in_tx(store, holder))
            await locked.wait()
            same = asyncio.ensure_future(in_tx(store, lambda db: lock_room(db, "r")))
            await asyncio.wait_for(in_tx(store, lambda db: lock_room(db, "other")), 5)
            await asyncio.sleep(0.2)
            assert not same.done()
            release.set()
            await holding
            await asyncio.wait_for(same, 5)  # the lock ends with its transaction

    run(body())


def test_live_waiters_and_the_wait_graph_leave_out_decided_and_late_waits(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                await grant(db, "r", "L", "ann#1", "ann", 30)
                first = await wait_for(db, "L", "bob#1")
                late = await wait_for(db, "L", "cy#1", deadline_s=-1)
                decided = await wait_for(db, "L", "dan#1")
                await db.execute(
                    "UPDATE crdtdoc_waiters SET outcome = %s WHERE id = %s", (GRANTED, decided)
                )
                last = await wait_for(db, "L", "eve#1")
                live = await live_waiters(db, "r", "L")
                assert live == [(first, "bob#1"), (last, "eve#1")]
                assert late not in dict(live)
                holders, waits = await graph_of(db, "r")
                assert holders == {("r", "L"): ("ann#1", "ann")}
                assert waits == [(("r", "L"), "bob#1", "bob"), (("r", "L"), "eve#1", "eve")]

            await in_tx(store, work)

    run(body())


def test_a_freed_lease_goes_to_the_first_live_waiter_and_cycles_are_failed(pg_url: str) -> None:
    """ann holds A, bob holds B; in line for A: a wait past its deadline, cy, then bob; cy also
    waits for B. ann frees A: cy (the first live waiter) gets it with the next token and its
    own TTL, and bob, now waiting for cy who waits for bob, is failed with the cycle."""

    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                await grant(db, "r", "A", "ann#1", "ann", 30)
                await grant(db, "r", "B", "bob#1", "bob", 30)
                late = await wait_for(db, "A", "zed#1", deadline_s=-1)
                cy_a = await wait_for(db, "A", "cy#1", ttl=12)
                bob_a = await wait_for(db, "A", "bob#1")
                cy_b = await wait_for(db, "B", "cy#1")
                await db.execute("DELETE FROM crdtdoc_leases WHERE name = 'A'")  # ann releases
                effects = Effects()
                await hand_over(db, "r", "A", effects)
                assert effects.changed == {("r", "A")} and effects.expired == []
                owner, agent, _ = await lease_of(db, "r", "A") or ("", "", 0.0)
                assert (owner, agent) == ("cy#1", "cy")
                cur = await db.execute(
                    "SELECT token, expires_at - now() FROM crdtdoc_leases WHERE name = 'A'"
                )
                token, left = await cur.fetchone() or (0, None)
                assert token == 2 and left is not None and 11 < left.total_seconds() <= 12
                decided = await outcomes(db)
                assert decided[late] is None and decided[cy_a] == GRANTED and decided[cy_b] is None
                assert decided[bob_a].startswith(DEADLOCK)
                assert json.loads(decided[bob_a][len(DEADLOCK) :]) == [
                    "bob waits for 'A' held by cy",
                    "cy waits for 'B' held by bob",
                ]

            await in_tx(store, work)

    run(body())


def test_a_lease_nobody_waits_for_is_only_freed(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                effects = Effects()
                await hand_over(db, "r", "L", effects)
                assert effects.changed == {("r", "L")}
                assert await lease_of(db, "r", "L") is None

            await in_tx(store, work)

    run(body())


def test_expired_leases_are_swept_for_their_waiters(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                await grant(db, "r", "old", "ann#1", "ann", 30)
                await grant(db, "r", "fresh", "bob#1", "bob", 30)
                await grant(db, "other", "old", "cy#1", "cy", 30)
                await wait_for(db, "old", "dan#1")
                await expire_now(db, "old")
                await db.execute(
                    "UPDATE crdtdoc_leases SET expires_at = now() WHERE room = 'other'"
                )
                effects = Effects()
                await expire_in(db, "r", effects)
                assert effects.expired == [("r", "old", "ann")]
                assert effects.changed == {("r", "old")}
                assert (await lease_of(db, "r", "old") or ("",))[0] == "dan#1"
                assert await lease_of(db, "r", "fresh") is not None
                assert await lease_of(db, "other", "old") is not None  # another room: not swept

            await in_tx(store, work)

    run(body())


def test_a_freed_claim_passes_to_another_agent_never_to_its_holder(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as store:

            async def work(db: AsyncConnection) -> None:
                await grant(db, "r", "task/b/t1", "ann#1", "ann", 30)
                own = await wait_for(db, "task/b/t1", "ann#2")  # ann's other client
                bob = await wait_for(db, "task/b/t1", "bob#1")
                effects = Effects()
                now = await free_claim(db, "r", "task/b/t1", "ann", effects)
                assert now is not None and now[:2] == ("bob#1", "bob")
                assert own not in await outcomes(db)  # ann's own wait is gone, not granted
                assert (await outcomes(db))[bob] == GRANTED
                assert effects.changed == {("r", "task/b/t1")}
                alone = await free_claim(db, "r", "task/b/t1", "bob", Effects())
                assert alone is None  # nobody waits: free

            await in_tx(store, work)

    run(body())

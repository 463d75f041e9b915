"""Leases, fencing tokens, waiting, deadlocks, task claims and unique numbers decided in
PostgreSQL, raced by agents spread over three in-process hubs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import crdtdoc
from server.hub import Hub
from tests.hubs import run, running_cluster
from tests.server.test_cluster import FAST, seed_for
from tests.services import RedisServer


async def agents_over(hubs: Sequence[Hub], room: str, n: int) -> list[crdtdoc.ConnectedReplica]:
    replicas = [
        crdtdoc.connect(f"{hubs[i % len(hubs)].url}/{room}", agent=f"agent{i}", backoff=FAST)
        for i in range(n)
    ]
    await asyncio.gather(*(r.start() for r in replicas))
    return replicas


async def close_all(replicas: Sequence[crdtdoc.ConnectedReplica]) -> None:
    await asyncio.gather(*(r.close() for r in replicas))


def test_agents_on_three_hubs_race_for_one_lease_and_exactly_one_wins(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3) as hubs:
            replicas = await agents_over(hubs, "race", 21)
            tokens = []
            for _ in range(6):
                results = await asyncio.gather(
                    *(r.acquire("deploy", ttl=5) for r in replicas), return_exceptions=True
                )
                winners = [x for x in results if isinstance(x, crdtdoc.Lease)]
                losers = [x for x in results if isinstance(x, crdtdoc.LeaseHeld)]
                assert len(winners) == 1 and len(losers) == 20, results
                holder = (await replicas[1].leases())[0].holder  # asked through another hub
                assert all(e.holder == holder for e in losers)
                tokens.append(winners[0].token)
                await winners[0].release()
            assert tokens == list(range(tokens[0], tokens[0] + 6))  # one new token per grant
            await close_all(replicas)

    run(body(), timeout=90)


def test_numbers_drawn_through_three_hubs_are_unique_and_gapless(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3) as hubs:
            replicas = await agents_over(hubs, "numbers", 15)

            async def draw(r: crdtdoc.ConnectedReplica) -> list[int]:
                return [await r.next_number("invoice") for _ in range(10)]

            drawn = await asyncio.gather(*(draw(r) for r in replicas))
            assert all(d == sorted(d) for d in drawn)
            assert sorted(n for d in drawn for n in d) == list(range(1, 151))
            await close_all(replicas)

    run(body(), timeout=90)


def test_a_randomized_lease_mix_across_hubs_never_has_two_holders(
    pg_url: str, redis: RedisServer
) -> None:
    seed = seed_for("lease mix across hubs")
    rng = random.Random(seed)

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3, lease_poll_seconds=0.05) as hubs:
            replicas = await agents_over(hubs, "mix", 9)
            holding: list[str] = []
            grants = 0

            async def agent(r: crdtdoc.ConnectedReplica, local: random.Random) -> None:
                nonlocal grants
                for _ in range(6):
                    try:
                        lease = await r.acquire("db", ttl=5, wait=local.choice([0, 0.2, 2.0]))
                    except crdtdoc.LeaseHeld:
                        continue
                    holding.append(r.agent)
                    assert len(holding) == 1, f"two holders at once: {holding}"
                    grants += 1
                    await asyncio.sleep(local.random() * 0.03)
                    holding.remove(r.agent)
                    await lease.release()

            await asyncio.gather(*(agent(r, random.Random(rng.random())) for r in replicas))
            assert grants >= 9
            await close_all(replicas)

    run(body(), timeout=120)


def test_waiters_on_other_hubs_are_served_first_come_first_served(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3) as hubs:
            a, b, c = await agents_over(hubs, "queue", 3)
            held = await a.acquire("printer", ttl=5)
            b_wait = asyncio.create_task(b.acquire("printer", ttl=5, wait=10))
            await asyncio.sleep(0.2)
            c_wait = asyncio.create_task(c.acquire("printer", ttl=5, wait=10))
            await asyncio.sleep(0.2)
            waiting = (await a.leases())[0].waiting
            assert waiting == ["agent1", "agent2"]
            started = asyncio.get_running_loop().time()
            await held.release()
            b_lease = await b_wait
            assert asyncio.get_running_loop().time() - started < 1.0  # Redis woke it, no poll
            assert not c_wait.done() and b_lease.token == held.token + 1
            await b_lease.release()
            c_lease = await c_wait
            assert c_lease.token == held.token + 2
            await c_lease.release()
            await close_all([a, b, c])

    run(body(), timeout=60)


def test_a_deadlock_across_hubs_is_refused_with_its_cycle(pg_url: str, redis: RedisServer) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2) as hubs:
            a, b = await agents_over(hubs, "deadlock", 2)
            x = await a.acquire("x", ttl=5)
            y = await b.acquire("y", ttl=5)
            a_waits = asyncio.create_task(a.acquire("y", ttl=5, wait=10))
            await asyncio.sleep(0.3)
            try:
                await b.acquire("x", ttl=5, wait=10)
            except crdtdoc.Deadlock as exc:
                assert exc.cycle == [
                    "agent1 waits for 'x' held by agent0",
                    "agent0 waits for 'y' held by agent1",
                ]
            else:
                raise AssertionError("the deadlock was not detected")
            await y.release()
            assert (await a_waits).token > y.token
            await x.release()
            await close_all([a, b])

    run(body(), timeout=60)


def test_an_expired_task_claim_is_dropped_and_the_next_claim_gets_a_higher_token(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2, lease_poll_seconds=0.05) as hubs:
            a, b = await agents_over(hubs, "claims", 2)
            tid = a.tasks("backlog").add("rotate keys")
            await a.flush()
            await b.wait_for(a.version(), timeout=10)
            claim = await a.tasks("backlog").acquire(tid, ttl=0.3)
            claim._renewer.cancel()  # a crashed agent stops renewing
            await a.flush()
            await b.wait_for(a.version(), timeout=10)
            assert b.tasks("backlog").get(tid).assignee == "agent0"
            for _ in range(100):  # some hub drops the claim once the lease expires
                if b.tasks("backlog").get(tid).status == "open":
                    break
                await asyncio.sleep(0.05)
            assert b.tasks("backlog").get(tid).status == "open"
            taken = await b.tasks("backlog").acquire(tid, ttl=5)
            assert taken.token > claim.token
            await taken.release()
            await close_all([a, b])

    run(body(), timeout=60)

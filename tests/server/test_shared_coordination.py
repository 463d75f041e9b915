"""Leases, fencing tokens, waiting, deadlocks, task claims and unique numbers decided in
PostgreSQL, raced by agents spread over three in-process hubs."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

import crdtdoc
import crdtdoc.server.coordination
from crdtdoc.artifacts.tasks import task_lease_name
from crdtdoc.protocol.extension import Reply
from crdtdoc.server.cluster import Cluster
from crdtdoc.server.hub import Hub
from crdtdoc.server.pgstore import PostgresStore
from crdtdoc.server.shared_coordination import SharedCoordinator
from tests.server.test_cluster import FAST, seed_for
from tests.server.test_coordination import claim_freed_after_reopen
from tests.support.aio import run
from tests.support.hubs import running_cluster
from tests.support.services import RedisServer


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
            claim = await a.claim_task("backlog", tid, ttl=0.3)
            claim._renewer.cancel()  # a crashed agent stops renewing
            await a.flush()
            await b.wait_for(a.version(), timeout=10)
            assert b.tasks("backlog").get(tid).assignee == "agent0"
            for _ in range(100):  # some hub drops the claim once the lease expires
                if b.tasks("backlog").get(tid).status == "open":
                    break
                await asyncio.sleep(0.05)
            assert b.tasks("backlog").get(tid).status == "open"
            taken = await b.claim_task("backlog", tid, ttl=5)
            assert taken.token > claim.token
            await taken.release()
            await close_all([a, b])

    run(body(), timeout=60)


CLAIM = task_lease_name("board", "t1")
ANYONE = SimpleNamespace(grant=None, identity=None)  # a connection to a hub without a secret


@contextlib.asynccontextmanager
async def coordinator_on(pg_url: str, abandoned: Any) -> AsyncIterator[SharedCoordinator]:
    """A `SharedCoordinator` on `pg_url` whose lease table predates `granted_at` (the store's
    migration adds it), with `abandoned` as its claim hook."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE crdtdoc_leases (room text NOT NULL, name text NOT NULL, "
            "owner text NOT NULL, agent text NOT NULL, token bigint NOT NULL, "
            "expires_at timestamptz NOT NULL, PRIMARY KEY (room, name))"
        )
    store = PostgresStore(pg_url)
    await store.open()
    coordinator = SharedCoordinator(store, Cluster(None, store, dict), abandoned=abandoned)
    try:
        yield coordinator
    finally:
        await coordinator.close()
        await store.close()


async def claim(coordinator: SharedCoordinator, agent: str) -> Reply:
    args = {"name": CLAIM, "ttl": 60, "client": 1}
    return await coordinator.handle("room", ANYONE, agent, 1, "acquire", args)


def test_a_shared_claim_lease_whose_claim_is_gone_is_freed_for_the_next_claimant(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's claim record is gone (the hook says so) and the grace has passed: bob's claim
    frees her lease and takes it with a higher fencing token."""
    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.05)
    asked: list[tuple[str, str, str]] = []

    def abandoned(room: str, name: str, agent: str) -> bool:
        asked.append((room, name, agent))
        return True

    async def body() -> None:
        async with coordinator_on(pg_url, abandoned) as coordinator:
            alice = await claim(coordinator, "alice")
            assert alice.error is None, alice
            await asyncio.sleep(0.2)
            bob = await claim(coordinator, "bob")
            assert bob.error is None, bob
            assert bob.result["holder"] == "bob"
            assert bob.result["token"] > alice.result["token"]
            assert asked == [("room", CLAIM, "alice")]
            listed = await coordinator.handle("room", ANYONE, "bob", 2, "leases", {})
            assert [x["holder"] for x in listed.result["leases"]] == ["bob"]

    run(body())


def test_a_shared_claim_lease_is_kept_within_its_grace_or_while_its_claim_exists(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob is refused, alice named, while her lease is new (its record may not be written yet)
    and, after the grace, while the hook still finds her claim."""
    claim_gone = True

    async def body() -> None:
        nonlocal claim_gone
        async with coordinator_on(pg_url, lambda room, name, agent: claim_gone) as coordinator:
            alice = await claim(coordinator, "alice")
            assert alice.error is None, alice
            within_grace = await claim(coordinator, "bob")
            assert (within_grace.error, within_grace.result) == ("held", {"holder": "alice"})
            assert "held by alice" in within_grace.message
            monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.05)
            await asyncio.sleep(0.2)
            claim_gone = False
            still_claimed = await claim(coordinator, "bob")
            assert (still_claimed.error, still_claimed.result) == ("held", {"holder": "alice"})
            listed = await coordinator.handle("room", ANYONE, "alice", 2, "leases", {})
            assert listed.result["leases"][0]["token"] == alice.result["token"]

    run(body())


def test_a_claim_completed_and_reopened_on_another_hub_does_not_lock_the_task(
    pg_url: str, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hubs wire their rooms' task lists in as the hook: agent0 claims on one hub, agent1
    completes and reopens the task on another, and agent2 then takes the claim."""
    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.2)

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2) as hubs:
            await claim_freed_after_reopen(*await agents_over(hubs, "claims", 3))

    run(body(), timeout=60)


def test_a_freed_shared_claim_lease_does_not_pass_to_another_client_of_its_holder(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mallory's second client waits for her unrecorded claim lease: freeing it as abandoned
    handed it to that waiter, so the task stayed blocked; now the waiter is refused and bob,
    whose claim freed it, gets it."""
    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.05)

    async def body() -> None:
        async with coordinator_on(pg_url, lambda room, name, agent: True) as coordinator:
            held = await claim(coordinator, "mallory")
            assert held.error is None, held
            waiting = asyncio.ensure_future(
                coordinator.handle(
                    "room",
                    ANYONE,
                    "mallory",
                    2,
                    "acquire",
                    {"name": CLAIM, "ttl": 60, "client": 2, "wait": 30},
                )
            )
            await asyncio.sleep(0.3)
            bob = await claim(coordinator, "bob")
            assert bob.error is None and bob.result["holder"] == "bob", bob
            refused = await asyncio.wait_for(waiting, 10)
            assert refused.error == "held", refused

    run(body())

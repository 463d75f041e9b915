"""Leases, fencing, exclusive claims, unique numbers, guarded commits and deadlocks, through a
real hub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc.protocol.backoff import Backoff
from tests.support.aio import run
from tests.support.hubs import running_hub

FAST = Backoff(initial=0.05, maximum=0.3)


async def agents(url: str, n: int) -> list[crdtdoc.ConnectedReplica]:
    replicas = [crdtdoc.connect(url, agent=f"agent{i}", backoff=FAST) for i in range(n)]
    await asyncio.gather(*(r.start() for r in replicas))
    return replicas


async def close_all(replicas: list[crdtdoc.ConnectedReplica]) -> None:
    await asyncio.gather(*(r.close() for r in replicas))


def test_twenty_agents_race_for_one_lease_and_exactly_one_wins_each_round(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            replicas = await agents(hub.url + "/race", 20)
            tokens = []
            for _ in range(8):
                results = await asyncio.gather(
                    *(r.acquire("deploy", ttl=5) for r in replicas), return_exceptions=True
                )
                winners = [x for x in results if isinstance(x, crdtdoc.Lease)]
                losers = [x for x in results if isinstance(x, crdtdoc.LeaseHeld)]
                assert len(winners) == 1 and len(losers) == 19, results
                holder = (await replicas[0].leases())[0].holder
                assert all(e.holder == holder for e in losers)
                tokens.append(winners[0].token)
                await winners[0].release()
            assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
            await close_all(replicas)

    run(body(), timeout=90)


def test_twenty_agents_race_for_one_task(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            replicas = await agents(hub.url + "/tasks", 20)
            tid = replicas[0].tasks("backlog").add("migration 267")
            await replicas[0].flush()
            for r in replicas:
                await r.wait_for(replicas[0].version(), timeout=10)
            results = await asyncio.gather(
                *(r.claim_task("backlog", tid, ttl=5) for r in replicas),
                return_exceptions=True,
            )
            winners = [i for i, x in enumerate(results) if isinstance(x, crdtdoc.Lease)]
            assert len(winners) == 1, results
            winner = replicas[winners[0]]
            refused = [x for x in results if isinstance(x, crdtdoc.AlreadyClaimed)]
            assert len(refused) == 19 and all(e.holder == winner.agent for e in refused)
            await winner.flush()
            for r in replicas:
                await r.wait_for(winner.version(), timeout=10)
                task = r.tasks("backlog").get(tid)
                assert (task.assignee, task.contested) == (winner.agent, False)
            lease = results[winners[0]]
            assert isinstance(lease, crdtdoc.Lease)
            await lease.release()  # releasing the lease removes the claim
            assert winner.tasks("backlog").get(tid).status == "open"
            await close_all(replicas)

    run(body(), timeout=90)


def test_an_expired_claim_lease_returns_the_task_to_open(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b = await agents(hub.url + "/t", 2)
            tid = a.tasks("backlog").add("fix it")
            lease = await a.claim_task("backlog", tid, ttl=0.5)
            lease._renewer.cancel()  # a paused agent: it stops renewing
            await a.flush()
            await b.wait_for(a.version(), timeout=5)
            assert b.tasks("backlog").get(tid).assignee == "agent0"
            for _ in range(100):
                if b.tasks("backlog").get(tid).status == "open":
                    break
                await asyncio.sleep(0.05)
            assert b.tasks("backlog").get(tid).status == "open"  # the hub dropped the claim
            second = await b.claim_task("backlog", tid, ttl=5)
            assert second.token > lease.token
            await close_all([a, b])

    run(body())


def test_a_claim_whose_release_hook_fails_still_frees_the_lease(tmp_path: Path) -> None:
    """Releasing a claim removes its record from the task list first; when that fails (the task
    was deleted meanwhile: NotFound) the hub must still be told, or the lease stays held until
    its time runs out and nobody else can claim the task."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b = await agents(hub.url + "/t", 2)
            tid = a.tasks("backlog").add("fix it")
            lease = await a.claim_task("backlog", tid, ttl=60)

            async def failing() -> None:
                raise crdtdoc.NotFound("the task was removed meanwhile")

            lease.on_release(failing)
            with pytest.raises(crdtdoc.NotFound):
                await lease.release()
            assert [info.name for info in await b.leases()] == []  # the hub freed it
            await close_all([a, b])

    run(body())


def test_a_claim_that_cannot_be_recorded_gives_its_lease_back(tmp_path: Path) -> None:
    """The hub granted the lease, then writing the claim into the task list failed: the caller
    gets the error and the lease goes back, instead of staying held (and renewed) by a claim
    nobody holds a handle to."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b = await agents(hub.url + "/t", 2)
            tid = a.tasks("backlog").add("fix it")
            tasks = type(a.tasks("backlog"))

            def refuse(self: object, task_id: str, token: int) -> None:
                raise crdtdoc.InvalidValue("the record could not be written")

            original = tasks.record_claim
            tasks.record_claim = refuse  # type: ignore[method-assign]
            try:
                with pytest.raises(crdtdoc.InvalidValue):
                    await a.claim_task("backlog", tid, ttl=60)
            finally:
                tasks.record_claim = original  # type: ignore[method-assign]
            assert [info.name for info in await b.leases()] == []
            await close_all([a, b])

    run(body())


def test_numbers_are_unique_and_increasing(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            replicas = await agents(hub.url + "/numbers", 20)

            async def take(r: crdtdoc.ConnectedReplica) -> list[int]:
                return [await r.next_number("migration") for _ in range(10)]

            per_agent = await asyncio.gather(*(take(r) for r in replicas))
            for numbers in per_agent:
                assert numbers == sorted(numbers) and len(set(numbers)) == 10
            everything = sorted(n for numbers in per_agent for n in numbers)
            assert everything == list(range(1, 201))
            assert await replicas[0].next_number("other") == 1  # sequences are independent
            await close_all(replicas)

    run(body(), timeout=90)


def test_waiting_is_fair_and_deadlocks_are_reported_with_the_cycle(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b, c = await agents(hub.url + "/wait", 3)
            held = await a.acquire("module", ttl=10)
            order: list[str] = []

            async def wait_for_it(r: crdtdoc.ConnectedReplica) -> None:
                lease = await r.acquire("module", ttl=10, wait=10)
                order.append(r.agent)
                await lease.release()

            waiting = [asyncio.create_task(wait_for_it(b))]
            await asyncio.sleep(0.1)
            waiting.append(asyncio.create_task(wait_for_it(c)))
            await asyncio.sleep(0.1)
            await held.release()
            await asyncio.gather(*waiting)
            assert order == ["agent1", "agent2"]  # first come, first served

            # Two agents: a holds "module", b holds "interface"; b waits for module; then a
            # waiting for interface would close the cycle: refused at once, naming it.
            module = await a.acquire("module", ttl=10)
            interface = await b.acquire("interface", ttl=10)
            b_waits = asyncio.create_task(b.acquire("module", ttl=10, wait=10))
            await asyncio.sleep(0.1)
            with pytest.raises(crdtdoc.Deadlock) as deadlock:
                await a.acquire("interface", ttl=10, wait=10)
            assert deadlock.value.cycle == [
                "agent0 waits for 'interface' held by agent1",
                "agent1 waits for 'module' held by agent0",
            ]
            await module.release()
            await (await b_waits).release()
            await interface.release()

            # Three agents: a -> b -> c -> a.
            locks = [await r.acquire(f"lock{i}", ttl=10) for i, r in enumerate((a, b, c))]
            first = asyncio.create_task(a.acquire("lock1", ttl=10, wait=10))
            second = asyncio.create_task(b.acquire("lock2", ttl=10, wait=10))
            await asyncio.sleep(0.1)
            with pytest.raises(crdtdoc.Deadlock, match="agent2 waits for 'lock0' held by agent0"):
                await c.acquire("lock0", ttl=10, wait=10)
            for lease in locks:
                await lease.release()
            for task in (first, second):
                await (await task).release()
            await close_all([a, b, c])

    run(body())


def test_a_guarded_commit_that_loses_the_race_applies_nothing_and_the_retry_wins(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b, watcher = await agents(hub.url + "/commit", 3)
            a.spec("api").set("counter", 0)
            await a.flush()
            for r in (b, watcher):
                await r.wait_for(a.version(), timeout=5)

            async def bump(r: crdtdoc.ConnectedReplica, read_at: crdtdoc.Version) -> int:
                value = int(r.spec("api").get("counter"))
                async with r.commit(expect=read_at, on=["api"]):
                    r.spec("api").set("counter", value + 1)
                return value + 1

            # Both read counter = 0 at the same version and commit at once: the hub decides.
            versions = (a.version(), b.version())
            ids = {a.agent: a.client_id, b.agent: b.client_id}
            results = await asyncio.gather(
                bump(a, versions[0]), bump(b, versions[1]), return_exceptions=True
            )
            assert sorted(type(x).__name__ for x in results) == ["Conflict", "int"], results
            loser = b if isinstance(results[1], crdtdoc.Conflict) else a
            winner = a if loser is b else b
            conflict = results[1] if loser is b else results[0]
            assert isinstance(conflict, crdtdoc.Conflict)
            assert f"{winner.agent} set counter in api to 1" in str(conflict)
            # Nothing of the loser's is applied anywhere: its refused edit is gone locally (it
            # goes on under a fresh client id), and the hub and the others never had it.
            old_id = ids[loser.agent]
            had = versions[1 if loser is b else 0].clocks.get(old_id, 0)
            assert loser.client_id != old_id
            assert loser.version().clocks.get(old_id, 0) == had
            await winner.flush()
            for r in (loser, watcher):
                await r.wait_for(winner.version(), timeout=5)
            await asyncio.sleep(0.1)
            assert [v.value for v in watcher.spec("api").values("counter")] == [1]
            assert watcher.version().clocks.get(old_id, 0) == had

            async def again() -> int:
                return await bump(loser, loser.version())

            assert await crdtdoc.retry(again) == 2
            await loser.flush()
            await watcher.wait_for(loser.version(), timeout=5)
            assert watcher.spec("api").get("counter") == 2
            await close_all([a, b, watcher])

    run(body())


def test_a_stale_fencing_token_is_refused_and_the_replica_stays_consistent(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            old, new, watcher = await agents(hub.url + "/fence", 3)
            stale = await old.acquire("schema", ttl=0.3)
            stale._renewer.cancel()  # the old holder pauses (GC, swap, a long think)
            await asyncio.sleep(0.6)
            successor = await new.acquire("schema", ttl=10)
            assert successor.token > stale.token
            with new.transaction(fence=successor):
                new.document("schema").insert(0, "v2 by the successor\n")
            await new.flush()
            await old.wait_for(new.version(), timeout=5)
            with old.transaction(fence=stale):  # the zombie wakes up and writes
                old.document("schema").insert(0, "v1 by the zombie\n")
            with pytest.raises(crdtdoc.FencedOut, match="older token"):
                await old.flush()
            assert old.document("schema").read() == "v2 by the successor\n"
            await asyncio.sleep(0.2)
            assert watcher.document("schema").read() == "v2 by the successor\n"
            old.document("schema").append("later, unfenced\n")  # the replica carries on
            await old.flush()
            await watcher.wait_for(old.version(), timeout=5)
            assert watcher.document("schema").read().endswith("later, unfenced\n")
            await successor.release()
            await close_all([old, new, watcher])

    run(body())


def test_coordination_fails_fast_without_a_hub(tmp_path: Path) -> None:
    async def body() -> None:
        r = crdtdoc.connect("ws://127.0.0.1:9/r", agent="a", wait_synced=False, backoff=FAST)
        await r.start()
        for call in (
            r.acquire("x"),
            r.next_number("s"),
            r.leases(),
        ):
            with pytest.raises(crdtdoc.NotConnected, match="needs the hub"):
                await call
        with pytest.raises(crdtdoc.NotConnected):
            async with r.commit():
                r.document("d").insert(0, "x")
        await r.close()

    run(body())


def test_a_random_mix_of_lease_traffic_never_has_two_holders(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            replicas = await agents(hub.url + "/mix", 6)
            holding: dict[str, str] = {}
            violations: list[str] = []

            async def worker(r: crdtdoc.ConnectedReplica, wrng: random.Random) -> None:
                for _ in range(15):
                    name = wrng.choice(["a", "b"])
                    try:
                        lease = await r.acquire(name, ttl=5, wait=wrng.choice([0, 0.2]))
                    except (crdtdoc.LeaseHeld, crdtdoc.Deadlock):
                        continue
                    if name in holding:
                        violations.append(f"{name}: {holding[name]} and {r.agent}")
                    holding[name] = r.agent
                    await asyncio.sleep(wrng.random() * 0.01)
                    del holding[name]
                    await lease.release()

            await asyncio.gather(*(worker(r, random.Random(rng.random())) for r in replicas))
            assert not violations, f"seed {seed}: {violations}"
            await close_all(replicas)

    print(f"seed {seed}")
    run(body(), timeout=90)


def test_a_cycle_formed_when_a_lease_changes_hands_is_broken(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a, b, c = await agents(hub.url + "/handover", 3)
            first = await a.acquire("L1", ttl=10)
            second = await c.acquire("L2", ttl=10)
            b_l1 = asyncio.create_task(b.acquire("L1", ttl=10, wait=10))  # b -> a
            await asyncio.sleep(0.05)
            b_l2 = asyncio.create_task(b.acquire("L2", ttl=10, wait=10))  # b -> c
            await asyncio.sleep(0.05)
            c_l1 = asyncio.create_task(c.acquire("L1", ttl=10, wait=10))  # c -> a: no cycle yet
            await asyncio.sleep(0.05)
            await first.release()  # L1 goes to b: now c waits for b while b waits for c
            with pytest.raises(crdtdoc.Deadlock) as deadlock:
                await asyncio.wait_for(c_l1, 5)  # failed at once, not after its 10 s wait
            assert "agent2 waits for 'L1' held by agent1" in deadlock.value.cycle
            await second.release()
            for task in (b_l1, b_l2):
                await (await task).release()
            await close_all([a, b, c])

    run(body())


def test_a_claim_lease_whose_claim_is_gone_does_not_lock_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """agent0 holds a task's claim lease; agent1 completes the task and reopens it, which
    removes agent0's claim record. The lease alone must not refuse every later claim, naming a
    holder no list shows: past its grace period, the hub frees it for the next claimant."""

    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.2)

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            await claim_freed_after_reopen(*await agents(hub.url + "/claims", 3))

    run(body())


async def claim_freed_after_reopen(
    holder: crdtdoc.ConnectedReplica,
    other: crdtdoc.ConnectedReplica,
    claimant: crdtdoc.ConnectedReplica,
) -> None:
    """holder claims; other completes and reopens the task, which removes holder's claim
    record; past the grace, claimant's claim frees the bare lease and gets it (any hub set-up:
    the single-hub and the PostgreSQL coordinators both run this)."""
    task = holder.tasks("board").add("ship")
    lease = await holder.claim_task("board", task, ttl=60)
    await holder.flush()
    await other.wait_for(holder.version(), timeout=10)
    with pytest.raises(crdtdoc.AlreadyClaimed, match=holder.agent):
        await other.claim_task("board", task, ttl=60)  # held, and claimed: refused
    other.tasks("board").complete(task)
    other.tasks("board").reopen(task)
    await other.flush()
    await asyncio.sleep(0.3)
    await claimant.wait_for(other.version(), timeout=10)
    assert claimant.tasks("board").get(task).claimants == []
    mine = await claimant.claim_task("board", task, ttl=60)  # freed, then granted
    assert mine.token > lease.token
    await mine.release()
    await close_all([holder, other, claimant])


def test_a_freed_claim_lease_does_not_pass_to_another_client_of_its_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mallory holds a task's claim lease with no claim recorded and keeps a second client
    waiting for it: when the lease was freed as abandoned it went to that waiter, so mallory
    blocked the task for ever without claiming it. Now her waits are refused and alice gets it."""
    import crdtdoc.server.coordination

    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 0.2)

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/claims"
            mallory, alice = await agents(url, 2)
            mallory_too = crdtdoc.connect(url, agent=mallory.agent, backoff=FAST)  # 2nd client
            await mallory_too.start()
            task = alice.tasks("board").add("ship")
            await alice.flush()
            name = alice.tasks("board").lease_name(task)
            held = await mallory.acquire(name, ttl=60)  # the bare lease, no claim recorded
            waiting = asyncio.ensure_future(mallory_too.acquire(name, ttl=60, wait=30))
            await asyncio.sleep(0.4)  # past the grace
            mine = await alice.claim_task("board", task, ttl=60)
            assert mine.token > held.token
            with pytest.raises(crdtdoc.LeaseHeld, match="claim behind it is gone"):
                await waiting
            await mine.release()
            await close_all([mallory, mallory_too, alice])

    run(body())

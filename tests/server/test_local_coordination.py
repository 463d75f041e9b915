"""`LocalCoordinator` (`crdtdoc.server.local_coordination`) over a real `SqliteCommitter`, driven
through `handle` with no hub or socket: every operation's reply, fencing tokens that grow with
each hand-over, a line of waiters served first come first and on expiry, the waits that end
without the lease (timeout, deadlock, the asker leaving), the per-agent limit, and leases,
tokens and numbers that survive a restart of the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from crdtdoc.protocol.extension import Reply
from crdtdoc.server.coordination import ExpiryHook
from crdtdoc.server.local_coordination import LocalCoordinator
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from tests.support.aio import run


def connection() -> SimpleNamespace:
    """A connection to a hub without a secret (each call: another connection)."""
    return SimpleNamespace(grant=None, identity=None)


ANYONE = connection()


@asynccontextmanager
async def local(
    db: Path, on_expire: ExpiryHook | None = None, **options: Any
) -> AsyncIterator[LocalCoordinator]:
    committer = SqliteCommitter(SqliteStore(str(db)))
    committer.start()
    coordinator = LocalCoordinator(committer, on_expire, **options)
    await coordinator.load()
    try:
        yield coordinator
    finally:
        await coordinator.close()
        await committer.close()


async def ask(
    coordinator: LocalCoordinator, agent: str, op: str, peer: Any = ANYONE, **args: Any
) -> Reply:
    return await coordinator.handle("r", peer, agent, 1, op, args)


def acquire(
    coordinator: LocalCoordinator,
    agent: str,
    name: str = "L",
    ttl: float = 30,
    wait: float = 0,
    peer: Any = ANYONE,
) -> Any:
    return ask(coordinator, agent, "acquire", peer, name=name, ttl=ttl, wait=wait, client=1)


def release(coordinator: LocalCoordinator, agent: str, token: int, name: str = "L") -> Any:
    return ask(coordinator, agent, "release", name=name, token=token, client=1)


async def listed(coordinator: LocalCoordinator, agent: str) -> list[dict[str, Any]]:
    reply = await coordinator.handle("r", ANYONE, agent, 1, "leases", {})
    return list(reply.result["leases"])


def test_acquire_renew_leases_release_and_next_answer_through_handle(tmp_path: Path) -> None:
    async def body() -> None:
        async with local(tmp_path / "hub.db") as coordinator:
            assert (await acquire(coordinator, "ann", ttl=20)).result == {
                "token": 1,
                "ttl": 20.0,
                "holder": "ann",
            }
            again = await acquire(coordinator, "ann", ttl=40)  # its own client: extended
            assert again.result == {"token": 1, "ttl": 40.0, "holder": "ann"}
            renewed = await ask(coordinator, "ann", "renew", name="L", token=1, ttl=50, client=1)
            assert renewed.result == {"token": 1, "ttl": 50.0, "holder": "ann"}
            [mine] = await listed(coordinator, "ann")
            assert (mine["name"], mine["holder"], mine["token"], mine["waiting"]) == (
                "L",
                "ann",
                1,
                [],
            )
            assert 49 < mine["expires_in"] <= 50
            assert (await listed(coordinator, "bob"))[0]["token"] is None  # not bob's to see
            assert (
                await coordinator.handle("elsewhere", ANYONE, "ann", 1, "leases", {})
            ).result == {"leases": []}
            assert (await release(coordinator, "ann", 1)).result == {"released": True}
            assert await listed(coordinator, "ann") == []
            numbers = [
                (await ask(coordinator, "ann", "next", sequence=s)).result["value"]
                for s in ("a", "a", "b", "a")
            ]
            assert numbers == [1, 2, 1, 3]

    run(body())


def test_a_held_lease_is_refused_naming_its_holder_and_tokens_grow_with_each_hand_over(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with local(tmp_path / "hub.db") as coordinator:
            tokens = []
            for agent in ("ann", "bob", "ann", "cy"):
                granted = await acquire(coordinator, agent)
                tokens.append(granted.result["token"])
                refused = await acquire(coordinator, "zed")
                assert refused == Reply(
                    1, {"holder": agent}, "held", f"lease 'L' is held by {agent}"
                )
                await release(coordinator, agent, granted.result["token"])
            assert tokens == [1, 2, 3, 4]
            other = await acquire(coordinator, "ann", name="M")  # tokens are per lease name
            assert other.result["token"] == 1

    run(body())


def test_renew_and_release_are_refused_as_lost_or_forbidden(tmp_path: Path) -> None:
    async def body() -> None:
        async with local(tmp_path / "hub.db") as coordinator:
            lost = await ask(coordinator, "ann", "renew", name="L", token=1, ttl=5, client=1)
            assert (lost.error, lost.message) == (
                "lost",
                "lease 'L' with token 1 is no longer held",
            )
            await acquire(coordinator, "ann")
            stale = await release(coordinator, "ann", 2)  # a token it does not hold under
            assert stale.error == "lost"
            stolen = await release(coordinator, "bob", 1)
            assert (stolen.error, stolen.result) == ("forbidden", {"holder": "ann"})
            other_client = await ask(coordinator, "ann", "release", name="L", token=1, client=2)
            assert other_client.error == "forbidden" and "client 2" in (other_client.message or "")
            assert [x["holder"] for x in await listed(coordinator, "ann")] == ["ann"]  # kept

    run(body())


def test_waiters_are_served_in_line_on_release_and_on_expiry(tmp_path: Path) -> None:
    expired: list[tuple[str, str, str]] = []

    async def on_expire(room: str, name: str, agent: str) -> None:
        expired.append((room, name, agent))

    async def body() -> None:
        async with local(tmp_path / "hub.db", on_expire) as coordinator:
            await acquire(coordinator, "ann", ttl=30)
            bob = asyncio.ensure_future(acquire(coordinator, "bob", ttl=0.3, wait=10))
            await asyncio.sleep(0.05)
            cy = asyncio.ensure_future(acquire(coordinator, "cy", ttl=30, wait=10))
            await asyncio.sleep(0.05)
            assert (await listed(coordinator, "ann"))[0]["waiting"] == ["bob", "cy"]
            await release(coordinator, "ann", 1)
            assert (await asyncio.wait_for(bob, 5)).result == {
                "token": 2,
                "ttl": 0.3,
                "holder": "bob",
            }
            assert not cy.done()
            # bob never renews: its lease runs out and passes to cy, the hook told.
            assert (await asyncio.wait_for(cy, 5)).result["token"] == 3
            async with asyncio.timeout(5):  # the hook runs once the drop is recorded
                while not expired:
                    await asyncio.sleep(0.01)
            assert expired == [("r", "L", "bob")]
            [lease] = await listed(coordinator, "cy")
            assert (lease["holder"], lease["token"], lease["waiting"]) == ("cy", 3, [])
            assert (await release(coordinator, "bob", 2)).error == "lost"

    run(body())


def test_waits_that_end_without_the_lease(tmp_path: Path) -> None:
    """A wait that times out, one refused at once as a deadlock, and one whose connection
    left are all out of the line: the next release skips them."""

    async def body() -> None:
        async with local(tmp_path / "hub.db") as coordinator:
            await acquire(coordinator, "ann", name="A")
            await acquire(coordinator, "bob", name="B")
            timed_out = await acquire(coordinator, "cy", name="A", wait=0.1)
            assert timed_out == Reply(
                1, {"holder": "ann"}, "held", "lease 'A' is still held by ann after waiting 0.1 s"
            )
            bob_waits = asyncio.ensure_future(acquire(coordinator, "bob", name="A", wait=10))
            await asyncio.sleep(0.05)
            deadlock = await acquire(coordinator, "ann", name="B", wait=10)
            cycle = ["ann waits for 'B' held by bob", "bob waits for 'A' held by ann"]
            assert (deadlock.error, deadlock.result) == ("deadlock", {"cycle": cycle})
            leaving = connection()
            dan = asyncio.ensure_future(
                acquire(coordinator, "dan", name="B", wait=10, peer=leaving)
            )
            await asyncio.sleep(0.05)
            by_name = {x["name"]: x["waiting"] for x in await listed(coordinator, "ann")}
            assert by_name == {"A": ["bob"], "B": ["dan"]}  # no cy, no refused ann
            coordinator.forget(leaving)
            await asyncio.gather(dan, return_exceptions=True)
            assert dan.cancelled()
            await release(coordinator, "bob", 1, name="B")
            left = [
                (x["name"], x["holder"], x["waiting"]) for x in await listed(coordinator, "ann")
            ]
            assert left == [("A", "ann", ["bob"])]  # B went to nobody: dan had left
            await release(coordinator, "ann", 1, name="A")
            assert (await asyncio.wait_for(bob_waits, 5)).result["token"] == 2

    run(body())


def test_an_agent_holding_or_waiting_for_its_limit_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with local(tmp_path / "hub.db", max_leases_per_agent=2) as coordinator:
            await acquire(coordinator, "ann", name="A")
            await acquire(coordinator, "bob", name="B")
            waiting = asyncio.ensure_future(acquire(coordinator, "ann", name="B", wait=10))
            await asyncio.sleep(0.05)
            refused = await acquire(coordinator, "ann", name="C")  # one held, one waited for
            assert refused.error == "limit" and "ann already holds or waits for 2" in (
                refused.message or ""
            )
            assert (await acquire(coordinator, "bob", name="C")).error is None  # per agent
            await release(coordinator, "bob", 1, name="B")
            assert (await asyncio.wait_for(waiting, 5)).result["holder"] == "ann"

    run(body())


def test_leases_tokens_and_numbers_survive_a_restart(tmp_path: Path) -> None:
    expired: list[tuple[str, str, str]] = []

    async def on_expire(room: str, name: str, agent: str) -> None:
        expired.append((room, name, agent))

    async def body() -> None:
        db = tmp_path / "hub.db"
        async with local(db) as before:
            first = await acquire(before, "ann")
            await release(before, "ann", first.result["token"])
            held = await acquire(before, "ann")  # token 2, held across the restart
            assert held.result["token"] == 2
            await acquire(before, "bob", name="short", ttl=0.2)
            assert (await ask(before, "ann", "next", sequence="n")).result == {"value": 1}
        await asyncio.sleep(0.3)  # "short" runs out while the hub is down
        async with local(db, on_expire) as after:
            assert after.fence_refusal("r", "L", 2, "ann") is None
            assert "older token" in (after.fence_refusal("r", "L", 1, "ann") or "")
            assert (await acquire(after, "bob")).result == {"holder": "ann"}
            renewed = await ask(after, "ann", "renew", name="L", token=2, ttl=30, client=1)
            assert renewed.result["token"] == 2
            async with asyncio.timeout(5):  # the expired lease is dropped in the background
                while not expired:
                    await asyncio.sleep(0.01)
            assert expired == [("r", "short", "bob")]
            assert [x["name"] for x in await listed(after, "ann")] == ["L"]
            assert (await acquire(after, "cy", name="short")).result["token"] == 2
            await release(after, "ann", 2)
            assert (await acquire(after, "bob")).result["token"] == 3  # never 1 or 2 again
            assert (await ask(after, "ann", "next", sequence="n")).result == {"value": 2}

    run(body())

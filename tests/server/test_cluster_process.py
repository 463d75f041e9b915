"""Three real `crdtdoc serve` processes on one PostgreSQL database and Redis: agents spread over
them converge, late joiners get everything on any hub, and when one hub is SIGKILLed mid-load its
agents fail over to the others with nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import crdtdoc
from crdtdoc.versions import Version
from tests.server.test_cluster import FAST, content, converged, edit_concurrently, seed_for
from tests.support.aio import run
from tests.support.hubs import HubProcess
from tests.support.services import RedisServer
from tests.support.stored import stored_shared_replica


@contextlib.contextmanager
def hub_processes(
    pg_url: str, redis_url: str, tmp_path: Path, n: int
) -> Iterator[list[HubProcess]]:
    hubs = [
        HubProcess(
            pg_url, 0, "--redis", redis_url, "--log-level", "info", log=tmp_path / f"hub{i}.log"
        )
        for i in range(n)
    ]
    try:
        for hub in hubs:
            hub.start()
        yield hubs
    finally:
        for hub in hubs:
            hub.stop()


def urls_from(hubs: list[HubProcess], first: int, room: str) -> list[str]:
    """Every hub's URL for `room`, starting with hub `first` (the others are fallbacks)."""
    order = hubs[first:] + hubs[:first]
    return [f"{h.url}/{room}" for h in order]


def test_three_hub_processes_converge_and_late_joiners_get_everything(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    seed = seed_for("three processes")
    with hub_processes(pg_url, redis.url, tmp_path, 3) as hubs:

        async def body() -> None:
            agents = [
                crdtdoc.connect(urls_from(hubs, i % 3, "plan"), agent=f"agent{i}", backoff=FAST)
                for i in range(6)
            ]
            await asyncio.gather(*(a.start() for a in agents))
            await edit_concurrently(agents, seed, steps=40)
            await asyncio.gather(*(a.flush() for a in agents))
            await converged(agents)
            for i in range(3):
                async with crdtdoc.connect(f"{hubs[i].url}/plan", agent=f"late{i}") as late:
                    await converged([late, agents[0]])
            assert content(stored_shared_replica(pg_url, "plan")) == content(agents[0])
            for a in agents:
                await a.close()

        run(body(), timeout=120)


def test_sigkill_of_one_hub_mid_load_loses_nothing_acknowledged(
    pg_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    """Six agents write and flush continuously, two on each hub; hub 0 is SIGKILLed at a random
    moment. Its agents move to the next hub in their list and deliver what hub 0 never stored;
    every version any hub acknowledged is in PostgreSQL, and all converge."""
    seed = seed_for("sigkill one of three")
    rng = random.Random(seed)
    with hub_processes(pg_url, redis.url, tmp_path, 3) as hubs:

        async def body() -> None:
            agents = [
                crdtdoc.connect(urls_from(hubs, i % 3, "load"), agent=f"agent{i}", backoff=FAST)
                for i in range(6)
            ]
            await asyncio.gather(*(a.start() for a in agents))
            acknowledged: list[Version] = []
            stop = asyncio.Event()

            async def writer(i: int, agent: crdtdoc.ConnectedReplica) -> None:
                step = 0
                while not stop.is_set():
                    agent.document("log").append(f"{agent.agent}:{step}\n")
                    step += 1
                    with contextlib.suppress(crdtdoc.SyncTimeout):
                        acknowledged.append(await agent.flush(timeout=10))
                    await asyncio.sleep(rng.random() * 0.02)

            writing = [asyncio.create_task(writer(i, a)) for i, a in enumerate(agents)]
            await asyncio.sleep(0.5 + rng.random())
            before = len(acknowledged)
            hubs[0].kill()  # SIGKILL
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*writing)
            assert before > 0 and len(acknowledged) > before  # writing went on after the kill
            moved = agents[0::3]
            assert all(a.url.startswith(hubs[1].url) for a in moved)  # failed over
            await asyncio.gather(*(a.flush() for a in agents))
            stored = stored_shared_replica(pg_url, "load")
            for version in acknowledged:
                assert version <= stored.version(), "an acknowledged version is not stored"
            await converged(agents, view=lambda r: r.document("log").read())
            lines = agents[1].document("log").read().splitlines()
            for a in agents:  # every agent's every line, exactly once
                mine = [line for line in lines if line.startswith(a.agent + ":")]
                assert mine == [f"{a.agent}:{k}" for k in range(len(mine))]
            for a in agents:
                await a.close()

        run(body(), timeout=150)

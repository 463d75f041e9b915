"""`crdtdoc serve` as a real process: startup line, graceful shutdown, restarts, and SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import crdtdoc
from crdtdoc.protocol.backoff import Backoff
from tests.support.aio import run
from tests.support.hubs import HubProcess
from tests.support.stored import stored_replica

FAST_RETRY = Backoff(initial=0.05, maximum=0.3)


def test_prints_its_real_address_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub.db")
    url = hub.start()
    assert hub.port != 0

    async def body() -> None:
        ws = await ws_connect(url + "/room")
        started = time.monotonic()
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 1001
        assert time.monotonic() - started < 10

    try:
        run(body())
        assert hub.proc is not None
        assert hub.proc.wait(timeout=10) == 0
        hub.proc = None
    finally:
        hub.stop()


def test_agents_reconnect_after_a_restart_and_offline_edits_arrive(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub.db")
    url = hub.start() + "/room"

    async def body() -> None:
        a = crdtdoc.connect(url, agent="a", backoff=FAST_RETRY)
        b = crdtdoc.connect(url, agent="b", backoff=FAST_RETRY)
        await a.start()
        await b.start()
        a.document("d").insert(0, "A1 ")
        await a.flush()
        hub.kill(signal.SIGTERM)
        a.document("d").append("A2-offline ")
        b.document("d").append("B1-offline ")
        await asyncio.sleep(0.3)
        await asyncio.get_running_loop().run_in_executor(None, hub.start)
        await a.flush(timeout=15)
        await b.flush(timeout=15)
        await a.wait_for(b.version(), timeout=15)
        await b.wait_for(a.version(), timeout=15)
        text = a.document("d").read()
        assert text == b.document("d").read()
        for part in ("A1", "A2-offline", "B1-offline"):
            assert part in text
        await a.close()
        await b.close()

    try:
        run(body())
    finally:
        hub.stop()


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Writers edit and flush continuously; the hub is SIGKILLed several times. After each
    kill, the database (read directly, before anyone reconnects) holds every acknowledged
    change."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    db = tmp_path / "hub.db"
    hub = HubProcess(db, 0, "--compact-log-updates", "25")
    url = hub.start() + "/room"
    acknowledged: list[crdtdoc.Version] = []

    async def writer(r: crdtdoc.ConnectedReplica, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            r.document("d").append(f"{r.agent}:{n} ")
            r.map("m").set(r.agent, n)
            n += 1
            with contextlib.suppress(crdtdoc.SyncTimeout):  # the hub is down: keep editing
                acknowledged.append(await r.flush(timeout=0.5))

    async def body() -> None:
        agents = [crdtdoc.connect(url, agent=f"w{i}", backoff=FAST_RETRY) for i in range(3)]
        for a in agents:
            await a.start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer(a, stop)) for a in agents]
        loop = asyncio.get_running_loop()
        for kill in range(4):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            count = len(acknowledged)
            await loop.run_in_executor(None, hub.kill)
            stored = stored_replica(db, "room").version()
            lost = [v for v in acknowledged if not v <= stored]
            assert not lost, f"seed {seed}: kill {kill} lost {len(lost)} acknowledged versions"
            assert count > 0, f"seed {seed}: nothing was acknowledged before kill {kill}"
            await loop.run_in_executor(None, hub.start)
        stop.set()
        await asyncio.gather(*tasks)
        for a in agents:
            await a.flush(timeout=15)
        for a in agents:
            for other in agents:
                await a.wait_for(other.version(), timeout=15)
        assert len({a.document("d").read() for a in agents}) == 1
        for a in agents:
            await a.close()

    print(f"seed {seed}")
    try:
        run(body(), timeout=120)
    finally:
        hub.stop()

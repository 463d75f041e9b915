"""Coordination across crashes: a lease holder SIGKILLed, and the hub SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc.protocol.backoff import Backoff
from tests.support.aio import run
from tests.support.hubs import HubProcess

FAST = Backoff(initial=0.05, maximum=0.3)

HOLDER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import crdtdoc

    async def main():
        async with crdtdoc.connect(sys.argv[1], agent="doomed") as r:
            lease = await r.acquire("deploy", ttl=1.0)
            print(lease.token, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lease

    asyncio.run(main())
    """
)


def test_a_sigkilled_holder_loses_its_lease_after_the_ttl_and_its_token_is_fenced(
    tmp_path: Path,
) -> None:
    hub = HubProcess(tmp_path / "hub.db")
    url = hub.start() + "/room"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", HOLDER, url], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == -9, proc.stderr
        old_token = int(proc.stdout.strip())

        async def body() -> None:
            async with crdtdoc.connect(url, agent="heir") as heir:
                with pytest.raises(crdtdoc.LeaseHeld, match="held by doomed"):
                    await heir.acquire("deploy", ttl=5)
                lease = await heir.acquire("deploy", ttl=5, wait=5)  # granted once the TTL ends
                assert lease.token > old_token
                # A write carrying the dead holder's token (a zombie's) is refused.
                zombie = crdtdoc.Lease(heir, "deploy", old_token, 1.0)
                zombie._renewer.cancel()
                with heir.transaction(fence=zombie):
                    heir.document("d").insert(0, "zombie write")
                with pytest.raises(crdtdoc.FencedOut):
                    await heir.flush()
                assert heir.document("d").read() == ""
                with heir.transaction(fence=lease):
                    heir.document("d").insert(0, "heir write")
                await heir.flush()
                assert heir.document("d").read() == "heir write"
                await lease.release()

        run(body())
    finally:
        hub.stop()


def test_after_a_hub_sigkill_no_number_repeats_and_no_lease_has_two_holders(
    tmp_path: Path,
) -> None:
    hub = HubProcess(tmp_path / "hub.db")
    url = hub.start() + "/room"

    async def body() -> None:
        a = crdtdoc.connect(url, agent="a", backoff=FAST)
        b = crdtdoc.connect(url, agent="b", backoff=FAST)
        await a.start()
        await b.start()
        numbers: list[int] = []
        stop = asyncio.Event()

        async def take(r: crdtdoc.ConnectedReplica) -> None:
            while not stop.is_set():
                try:
                    numbers.append(await r.next_number("migration"))
                except (crdtdoc.NotConnected, crdtdoc.SyncTimeout):
                    await asyncio.sleep(0.05)  # the hub is down: an answer never came

        held = await a.acquire("schema", ttl=30)
        takers = [asyncio.create_task(take(r)) for r in (a, b)]
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await asyncio.sleep(0.4)
            await loop.run_in_executor(None, hub.kill)
            await loop.run_in_executor(None, hub.start)
            for r in (a, b):
                for _ in range(100):
                    if r.synced:
                        break
                    await asyncio.sleep(0.05)
            with pytest.raises(crdtdoc.LeaseHeld, match="held by a"):
                await b.acquire("schema", ttl=5)  # a's lease survived the crash
            await held.renew()  # and a still holds it, with the same token
        stop.set()
        await asyncio.gather(*takers)
        assert len(numbers) == len(set(numbers)), "a number was handed out twice"
        assert numbers and max(numbers) >= len(numbers)
        await held.release()
        lease = await b.acquire("schema", ttl=5)
        assert lease.token > held.token
        for r in (a, b):
            with contextlib.suppress(Exception):
                await r.close()

    try:
        run(body(), timeout=90)
    finally:
        hub.stop()

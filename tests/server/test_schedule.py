"""`Scheduler` (`crdtdoc.server.schedule`): the real clocks, and background work on the running
loop."""

from __future__ import annotations

import asyncio
import time

from crdtdoc.server.schedule import Scheduler
from tests.support.aio import run


def test_the_clocks_are_the_real_ones() -> None:
    s = Scheduler()
    assert abs(s.wall() - time.time()) < 1
    before = s.monotonic()
    assert time.monotonic() >= before


def test_spawned_work_runs_in_the_background_and_reports_its_task() -> None:
    async def body() -> None:
        s = Scheduler()
        ran = asyncio.Event()
        finished: list[object] = []

        async def work() -> str:
            ran.set()
            return "done"

        s.spawn(work(), finished.append)
        s.spawn(asyncio.sleep(0))  # without a callback too
        await asyncio.wait_for(ran.wait(), 5)
        await asyncio.sleep(0)
        (task,) = finished
        assert isinstance(task, asyncio.Task) and task.result() == "done"

    run(body())


def test_call_later_waits_its_delay() -> None:
    async def body() -> None:
        s = Scheduler()
        called = asyncio.Event()
        started = time.monotonic()
        s.call_later(0.05, called.set)
        assert not called.is_set()
        await asyncio.wait_for(called.wait(), 5)
        assert time.monotonic() - started >= 0.04

    run(body())

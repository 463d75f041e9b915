"""Hubs to test against: in-process (`running_hub`, `running_cluster`, and `hub_in_thread` for
code that calls asyncio.run itself) or `crdtdoc serve` in a child process (`HubProcess`), and
`free_port`, where a hub not started yet will listen (or none ever does)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from benchmarks.processes import HubProcess as HubProcess
from benchmarks.processes import free_port as free_port
from crdtdoc.server.config import HubConfig
from crdtdoc.server.hub import Hub


@contextlib.asynccontextmanager
async def running_hub(db: Path, **settings: Any) -> AsyncIterator[Hub]:
    hub = Hub(HubConfig(db=str(db), **{"port": 0, **settings}))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


@contextlib.asynccontextmanager
async def running_cluster(
    pg_url: str, redis_url: str | None, hubs: int = 3, **settings: Any
) -> AsyncIterator[list[Hub]]:
    """`hubs` in-process hubs sharing one PostgreSQL database (and Redis, if given)."""
    started: list[Hub] = []
    try:
        for _ in range(hubs):
            hub = Hub(HubConfig(db=pg_url, redis=redis_url, **{"port": 0, **settings}))
            await hub.start()
            started.append(hub)
        yield started
    finally:
        for hub in started:
            await hub.close()


@contextlib.contextmanager
def hub_in_thread(db: Path, **settings: Any) -> Iterator[str]:
    """A hub on its own event loop in a background thread (for code that calls asyncio.run);
    yields its ws:// URL."""
    ready: queue.Queue[str | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        try:
            async with running_hub(db, **settings) as hub:
                ready.put(hub.url)
                while not stop.is_set():
                    await asyncio.sleep(0.02)
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    url = ready.get(timeout=20)
    if isinstance(url, BaseException):
        raise url
    try:
        yield url
    finally:
        stop.set()
        thread.join(timeout=20)

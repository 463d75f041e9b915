"""`Scheduler`: the clocks and background work a room uses, injected so that the room's core runs
without sockets or an event loop in tests (a test passes its own clock and collects what would be
spawned)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

Callback = Callable[["asyncio.Task[Any]"], None]


class Scheduler:
    """Real time and the running event loop."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        """Unix time, for what people read (when an agent was last seen)."""
        return time.time()

    def spawn(self, work: Coroutine[Any, Any, Any], done: Callback | None = None) -> None:
        """Runs `work` in the background; `done` is told of the finished task."""
        task = asyncio.get_running_loop().create_task(work)
        if done is not None:
            task.add_done_callback(done)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay, callback)

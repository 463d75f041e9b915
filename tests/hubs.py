"""Running real hubs for tests: in-process (`running_hub`) or as a `crdtdoc serve` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from crdtdoc import Replica
from crdtdoc.server.config import HubConfig
from crdtdoc.server.hub import Hub
from crdtdoc.server.store import SqliteStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Runs an async test body with a hard time limit."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


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


def stored_shared_replica(pg_url: str, room: str) -> Replica:
    """The room as the shared PostgreSQL database holds it, read directly (no hub involved)."""
    import psycopg

    replica = Replica("reader")
    with psycopg.connect(pg_url) as db:
        row = db.execute("SELECT data FROM crdtdoc_snapshots WHERE room = %s", (room,)).fetchone()
        if row is not None:
            replica.apply_update(bytes(row[0]), trusted=True)  # as a hub loads it
        for (data,) in db.execute(
            "SELECT data FROM crdtdoc_updates WHERE room = %s ORDER BY seq", (room,)
        ):
            replica.apply_update(bytes(data), trusted=True)
    return replica


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


def stored_replica(db: Path, room: str) -> Replica:
    """The room as the hub's database holds it, read directly (no hub involved)."""
    store = SqliteStore(str(db))
    try:
        stored = store.load(room)
    finally:
        store.close()
    replica = Replica("reader")
    # Trusted, as the hub loads it: the semantic gate judged each update on arrival, and a
    # snapshot orders items by client, not by arrival (a root's first content can differ).
    if stored.snapshot is not None:
        replica.apply_update(stored.snapshot, trusted=True)
    for update in stored.updates:
        replica.apply_update(update, trusted=True)
    return replica


class HubProcess:
    """`crdtdoc serve` in a child process."""

    def __init__(
        self,
        db: Path | str,
        port: int = 0,
        *args: str,
        log: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.log = log  # stderr goes here (default: beside the SQLite file)
        self.args = args
        self.wrapper = list(wrapper)  # a command that runs the hub (nsenter ... --)
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> str:
        cmd = [
            *self.wrapper,
            sys.executable,
            "-m",
            "crdtdoc.cli",
            "serve",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
            *self.args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr(), text=True, env=env
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"hub exited early: {self.stderr_text()}")
            match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                return f"ws://127.0.0.1:{self.port}"
        raise RuntimeError("hub did not print its address in time")

    def _stderr(self) -> IO[bytes]:
        """The hub's stderr goes to a file beside its database: a pipe nobody reads would fill
        up and stall the hub."""
        return open(self.stderr_path, "ab")

    @property
    def stderr_path(self) -> Path:
        if self.log is not None:
            return self.log
        if not isinstance(self.db, Path):
            raise ValueError("a hub on PostgreSQL needs log= for its stderr")
        return self.db.with_name(self.db.name + ".stderr")

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGKILL)

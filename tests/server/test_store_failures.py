"""A store that cannot commit is reported as what it is (issue 16, "store failures are
misreported"): the real error, logged once when it starts and once when it ends; `/readyz` 503
and a metric meanwhile; clients waiting in `flush()` told at once (`HubStorageError`); nothing lost,
everything acknowledged once the store commits again; a read-only database refused at start.

Real SQLite throughout, real hubs on 127.0.0.1. A full disk is SQLite's own `max_page_count`
(SQLITE_FULL raised by the engine, exactly as when the disk fills) or, where Linux lets an
unprivileged process mount one (a user namespace), a real 2 MiB tmpfs filled to the last block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc.errors import HubStorageError, StorageError
from crdtdoc.server.commit import Append, StoreFailure
from crdtdoc.server.config import HubConfig
from crdtdoc.server.hub import Hub
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from tests.server.test_metrics import scrape, value
from tests.support.aio import run
from tests.support.hubs import HubProcess, running_cluster, running_hub
from tests.support.stored import stored_replica, stored_shared_replica

FULL = "database or disk is full"
READ_ONLY = "attempt to write a readonly database"
MASKED = "cannot rollback"


# -- fixtures: a full disk, a read-only file, captured logs ----------------------------------------


def _page_limit(db: sqlite3.Connection, extra: int | None) -> None:
    """SQLite's `max_page_count` on `db`: the file may grow by `extra` pages (None: back to no
    limit). Past it the engine fails every write with SQLITE_FULL, as on a full disk."""
    if extra is None:
        db.execute("PRAGMA max_page_count = 4294967294")  # the largest; SQLite caps it itself
        return
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + extra}")


@contextlib.asynccontextmanager
async def disk_full(hub: Hub) -> AsyncIterator[None]:
    """Test-only: the hub's own SQLite connection gets a page limit it is already at (on the
    store's thread, which owns the connection); leaving the block lifts it."""
    committer = hub.committer
    assert isinstance(committer, SqliteCommitter)
    connection = committer.store._db  # the store's one connection
    await committer.run_blocking(lambda: _page_limit(connection, 0))
    try:
        yield
    finally:
        await committer.run_blocking(lambda: _page_limit(connection, None))


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Makes `path` impossible to write for this process; yields how. Not root: its mode
    (0444). Root ignores modes, so there the file gets the immutable attribute (chattr +i,
    which stops root too); skips when neither works here."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode & 0o777
        path.chmod(0o444)

        def undo() -> None:  # SQLite gives the -wal and -shm files it creates the file's mode
            for name in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(path.name + name).chmod(mode)

        how = "mode 0444"
    else:
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("running as root, where file modes do not stop writes, without chattr")
        done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(
                "running as root, where file modes do not stop writes, on a file system "
                f"without the immutable attribute: {done.stderr.strip()}"
            )
        tool = chattr

        def undo() -> None:
            subprocess.run([tool, "-i", str(path)], check=True)

        how = "chattr +i"
    try:
        try:
            with open(path, "r+b"):
                pass
        except PermissionError:
            pass
        else:
            pytest.skip(f"{how} does not stop this process writing {path}")
        yield how
    finally:
        undo()


class Captured(logging.Handler):
    """The records of one logger (attached to it directly: the hub's CLI stops propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, message: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {vars(r)}" for r in self.records)


@contextlib.contextmanager
def captured(name: str = "crdtdoc") -> Iterator[Captured]:
    logger = logging.getLogger(name)
    handler, level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def http(url: str, path: str) -> tuple[int, str]:
    return await asyncio.get_running_loop().run_in_executor(None, scrape, url, path)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Waits for `check()`; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


BIG = "0123456789abcdef" * 1024  # 16 KiB: a few new pages in the log, past any page limit


# -- the store: the real error, never "cannot rollback" --------------------------------------------


def test_a_full_database_reports_sqlite_full_and_recovers(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    store.commit([Append("r", 1, b"small")])
    _page_limit(store._db, 0)
    with pytest.raises(StoreFailure) as failed:
        store.commit([Append("r", 2, BIG.encode()), Append("r", 3, b"x")])
    assert FULL in str(failed.value) and MASKED not in str(failed.value)
    assert failed.value.reason == FULL  # SQLite's words, no path: what /readyz shows
    assert str(tmp_path) in str(failed.value)  # the message says which database, for the logs
    assert not store._db.in_transaction  # SQLite rolled back itself; nothing was left open
    _page_limit(store._db, None)
    store.commit([Append("r", 2, BIG.encode()), Append("r", 3, b"x")])  # the same batch again
    assert store.load("r").updates == [b"small", BIG.encode(), b"x"]
    store.close()


def test_a_read_only_database_is_refused_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(str(path)).close()
    with read_only(path), pytest.raises(StorageError) as refused:
        SqliteStore(str(path))
    assert READ_ONLY in str(refused.value) and "cannot be written" in str(refused.value)
    SqliteStore(str(path)).close()  # writable again: opens


# -- the hub: logs, /readyz, metrics, clients, nothing lost ----------------------------------------


def test_full_disk_is_reported_to_operators_and_clients_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """While the disk is full: one log line naming SQLITE_FULL (none saying "cannot rollback"),
    /readyz 503 with the reason, the failing gauge at 1, `flush()` raising `HubStorageError`
    (also for a client that joins meanwhile). Then space returns: one recovery line, 200,
    every edit acknowledged, and all of them still there after a restart."""
    db = tmp_path / "hub.db"

    async def body() -> None:
        with captured() as logs:
            async with running_hub(db) as hub:
                url = hub.url + "/full"
                async with crdtdoc.connect(url, agent="alice") as alice:
                    alice.document("d").insert(0, "before;")
                    await alice.flush(timeout=10)
                    assert (await http(hub.url, "/readyz")) == (200, "ready\n")
                    async with disk_full(hub):
                        alice.document("d").append("during:" + BIG + ";")
                        with pytest.raises(HubStorageError) as failed:
                            await alice.flush(timeout=10)
                        message = str(failed.value)
                        assert f"the hub cannot store updates: {FULL}" in message
                        assert "your edits are kept locally and will be sent again" in message
                        assert failed.value.reason == FULL and alice.store_error == FULL
                        status, text = await http(hub.url, "/readyz")
                        assert (status, text) == (503, f"store failing: {FULL}\n")
                        metrics = (await http(hub.url, "/metrics"))[1]
                        assert value(metrics, "crdtdoc_store_failing") == 1
                        assert value(metrics, "crdtdoc_store_failed_commits_total") >= 1
                        # Editing goes on; a client that joins now is told within a retry.
                        alice.document("d").append("more;")
                        async with crdtdoc.connect(url, agent="bob") as bob:
                            bob.document("d").append("bob;")
                            with pytest.raises(HubStorageError, match=FULL):
                                await bob.flush(timeout=5)
                            # several retries, still one line about it
                            await asyncio.sleep(2.5)
                            assert hub.committer.failed_commits >= 3
                            with pytest.raises(HubStorageError):
                                await alice.flush(timeout=5)
                            failing = logs.named("store cannot commit; retrying until it can")
                            assert len(failing) == 1, logs.text()
                            assert failing[0].reason == FULL  # type: ignore[attr-defined]
                            assert MASKED not in logs.text()
                            assert not logs.named("store commits again")
                    # Space is back: the next retry (within a second) commits, and says so.
                    await until(lambda: alice.store_error is None)
                    await alice.flush(timeout=5)
                    await bob_flushes_after(url)
                    assert alice.store_error is None
                    assert (await http(hub.url, "/readyz")) == (200, "ready\n")
                    metrics = (await http(hub.url, "/metrics"))[1]
                    assert value(metrics, "crdtdoc_store_failing") == 0
                    assert len(logs.named("store commits again")) == 1
                    assert len(logs.named("store cannot commit; retrying until it can")) == 1
                    expected = alice.document("d").read()
            assert MASKED not in logs.text()
        for part in ("before;", "during:", "more;", "bob;"):
            assert part in expected
        assert stored_replica(db, "full").document("d").read() == expected
        async with (  # a restarted hub serves all of it
            running_hub(db) as hub,
            crdtdoc.connect(hub.url + "/full", agent="carol") as carol,
        ):
            assert carol.document("d").read() == expected

    run(body())


async def bob_flushes_after(url: str) -> None:
    """bob's edit (made while the disk was full, then bob left) is durable: a new client that
    flushes nothing of its own sees it in the hub's state."""
    async with crdtdoc.connect(url, agent="dave") as dave:
        assert "bob;" in dave.document("d").read()
        await dave.flush(timeout=5)


def test_blocking_flush_is_told_too(tmp_path: Path) -> None:
    """`connect_blocking(...).flush()` raises `HubStorageError` while the disk is full and
    returns once it is not."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/blocking"
            replica = await asyncio.to_thread(crdtdoc.connect_blocking, url, agent="script")
            try:
                async with disk_full(hub):
                    replica.document("d").insert(0, BIG)
                    with pytest.raises(HubStorageError, match=FULL):
                        await asyncio.to_thread(replica.flush, 10)
                await until(lambda: replica.store_error is None)
                await asyncio.to_thread(replica.flush, 5)
            finally:
                await asyncio.to_thread(replica.close)

    run(body())


def test_a_waiting_flush_is_told_long_before_its_timeout(tmp_path: Path) -> None:
    """A client used to learn nothing until its flush timed out; now it is told as soon as
    the first commit fails."""

    async def body() -> None:
        async with (
            running_hub(tmp_path / "hub.db") as hub,
            crdtdoc.connect(hub.url + "/t", agent="a") as a,
        ):
            async with disk_full(hub):
                a.document("d").insert(0, BIG)
                started = time.monotonic()
                with pytest.raises(HubStorageError):
                    await a.flush(timeout=30)
                assert time.monotonic() - started < 5
            await until(lambda: a.store_error is None)
            await a.flush(timeout=5)

    run(body())


def test_a_failing_postgresql_store_is_reported_the_same_way(pg_url: str) -> None:
    """On PostgreSQL (several hubs' store) the same: the server's own error as the reason, on
    /readyz and in `flush()`, and everything acknowledged once the database takes writes again.
    The failure is PostgreSQL's own: a check constraint every new log row violates."""
    import psycopg

    async def body() -> None:
        async with (
            running_cluster(pg_url, None, hubs=1) as [hub],
            crdtdoc.connect(hub.url + "/pg", agent="alice") as alice,
            await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db,
        ):
            alice.document("d").insert(0, "before;")
            await alice.flush(timeout=10)
            await db.execute(
                "ALTER TABLE crdtdoc_updates ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
            )
            alice.document("d").append("during;")
            with pytest.raises(HubStorageError) as failed:
                await alice.flush(timeout=10)
            reason = failed.value.reason
            assert 'violates check constraint "refuse_all"' in reason
            assert pg_url not in reason
            assert (await http(hub.url, "/readyz")) == (503, f"store failing: {reason}\n")
            await db.execute("ALTER TABLE crdtdoc_updates DROP CONSTRAINT refuse_all")
            await until(lambda: alice.store_error is None)
            await alice.flush(timeout=5)
            assert (await http(hub.url, "/readyz")) == (200, "ready\n")
        assert stored_shared_replica(pg_url, "pg").document("d").read() == "before;during;"

    run(body())


# -- a read-only database: the hub does not start ---------------------------------------------


def _database_with(tmp_path: Path, room: str, text: str) -> Path:
    db = tmp_path / "hub.db"

    async def body() -> None:
        async with (
            running_hub(db) as hub,
            crdtdoc.connect(hub.url + "/" + room, agent="a") as a,
        ):
            a.document("d").insert(0, text)
            await a.flush(timeout=10)

    run(body())
    return db


def test_a_hub_on_a_read_only_database_does_not_start(tmp_path: Path) -> None:
    db = _database_with(tmp_path, "ro", "kept")
    with read_only(db):
        hub = Hub(HubConfig(db=str(db), port=0))
        with pytest.raises(StorageError) as refused:
            run(hub.start())
        assert READ_ONLY in str(refused.value) and str(db) in str(refused.value)
        run(hub.close())
    assert stored_replica(db, "ro").document("d").read() == "kept"


def test_crdtdoc_serve_on_a_read_only_database_exits_with_the_reason(tmp_path: Path) -> None:
    db = _database_with(tmp_path, "ro", "kept")
    with read_only(db):
        proc = subprocess.Popen(
            [sys.executable, "-m", "crdtdoc.cli", "serve", "--port", "0", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # it serves: the failure this test is about
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the hub started on a read-only database: {out}")
    assert proc.returncode == 1, (out, err)
    assert "listening" not in out
    assert READ_ONLY in err and "cannot be written" in err and MASKED not in err


# -- a real full file system (a tmpfs in a user namespace), `crdtdoc serve` as a process ----------


class SmallDisk:
    """A 2 MiB tmpfs mounted in a mount namespace of its own, kept alive by a sleeping process;
    hubs are started inside it with nsenter, and the test reaches its files through
    /proc/<keeper>/root. Filling it (`fill`) makes every write of the hub fail with ENOSPC."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        mountpoint.mkdir()
        unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
        if unshare is None or nsenter is None:
            pytest.skip("needs util-linux unshare and nsenter for a small file system")
        self.keeper = subprocess.Popen(
            [
                unshare,
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                f"mount -t tmpfs -o size=2m tmpfs '{mountpoint}' && echo mounted && exec sleep 600",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.keeper.stdout is not None
        if self.keeper.stdout.readline().strip() != "mounted":
            self.keeper.kill()
            err = self.keeper.communicate()[1]
            pytest.skip(f"cannot mount a tmpfs in a user namespace here: {err.strip()}")
        self.wrapper = [
            nsenter,
            "-t",
            str(self.keeper.pid),
            "--user",
            "--mount",
            "--preserve-credentials",
            f"--wd={os.getcwd()}",  # entering a mount namespace would start at its root
            "--",
        ]

    def path(self, name: str) -> Path:
        """`name` inside the tmpfs, as this process reaches it."""
        return Path(f"/proc/{self.keeper.pid}/root") / self.mountpoint.relative_to("/") / name

    def fill(self) -> None:
        with open(self.path("ballast"), "ab", buffering=0) as ballast:
            block = b"\0" * 4096
            with contextlib.suppress(OSError):  # ENOSPC: full to the last block
                while True:
                    ballast.write(block)

    def free(self) -> None:
        self.path("ballast").unlink()

    def close(self) -> None:
        self.keeper.kill()
        self.keeper.communicate()


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def test_a_real_full_file_system_with_crdtdoc_serve(tmp_path: Path) -> None:
    """The scenario of the issue on a real file system: the disk fills under a running hub
    process; its JSON log says SQLITE_FULL once (never "cannot rollback", never every second),
    /readyz says 503 and why, a client's flush is told; space returns: one recovery line,
    everything acknowledged, and all of it there after a graceful restart."""
    disk = SmallDisk(tmp_path / "small")
    stderr = tmp_path / "hub.stderr"
    hub = HubProcess(disk.mountpoint / "hub.db", 0, log=stderr, wrapper=disk.wrapper)
    try:
        url = hub.start()

        async def during_and_after() -> str:
            async with crdtdoc.connect(url + "/disk", agent="alice") as alice:
                alice.document("d").insert(0, "before;")
                await alice.flush(timeout=10)
                await asyncio.to_thread(disk.fill)
                for i in range(8):  # past the log's free pages and the WAL's: new blocks
                    alice.document("d").append(f"{i}:" + BIG + ";")
                with pytest.raises(HubStorageError) as failed:
                    await alice.flush(timeout=10)
                assert FULL in str(failed.value)
                status, text = await http(url, "/readyz")
                assert (status, text) == (503, f"store failing: {FULL}\n")
                await asyncio.sleep(2.5)  # retries
                await asyncio.to_thread(disk.free)
                took = await until(lambda: alice.store_error is None, timeout=10)
                print(f"acknowledged again {took:.2f} s after space returned")
                assert took < 5  # at the next retry, 1 s apart (timing: benchmarks, not here)
                await alice.flush(timeout=5)
                assert (await http(url, "/readyz")) == (200, "ready\n")
                return alice.document("d").read()

        expected = run(during_and_after())
        hub.kill(signal.SIGTERM)
        lines = _log_lines(stderr)
        failing = [e for e in lines if e.get("msg") == "store cannot commit; retrying until it can"]
        assert len(failing) == 1 and failing[0]["reason"] == FULL, lines
        assert len([e for e in lines if e.get("msg") == "store commits again"]) == 1, lines
        assert MASKED not in stderr.read_text()

        url = hub.start()

        async def after_restart() -> None:
            async with crdtdoc.connect(url + "/disk", agent="bob") as bob:
                assert bob.document("d").read() == expected
                assert re.search(r"before;0:.*;7:", expected)

        run(after_restart())
    finally:
        hub.stop()
        disk.close()
        print(stderr.read_text(errors="replace") if stderr.exists() else "no hub log")

"""The local servers a run starts, for the benchmarks and the test suite alike (tests/support uses
them): a free port, `crdtdoc serve` as a child process, a redis-server of its own, and a fresh
PostgreSQL database. Nothing here needs pytest; a missing service raises `ServiceUnavailable`,
which the tests turn into a skip (or a failure in CI)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN = os.environ.get("CRDTDOC_BENCH_POSTGRES", LOCAL_POSTGRES)
"""Where the benchmarks create their databases (the tests read CRDTDOC_TEST_POSTGRES)."""


class ServiceUnavailable(RuntimeError):
    """A service the run needs is not on this machine (redis-server, PostgreSQL)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Returns once something accepts connections on `port`; raises if `proc` exits first or
    nothing listens within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class HubProcess:
    """`crdtdoc serve` in a child process, on a SQLite file or a PostgreSQL URL (`db`), with more
    `crdtdoc serve` arguments in `args`. It can be killed and started again on the same port and
    database. Its stderr goes to `log` (by default a file beside the SQLite file): a pipe nobody
    reads would fill up and stall the hub. `wrapper` is a command that runs the hub (nsenter ...
    --)."""

    def __init__(
        self,
        db: Path | str,
        port: int = 0,
        *args: str,
        log: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.port = port
        self.args = args
        self.log = log
        self.wrapper = list(wrapper)
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        """Starts the hub and returns its URL once it prints it; a hub that has not within
        `timeout` seconds is killed, and this raises."""
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
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
            )
        proc = self.proc
        assert proc.stdout is not None
        # readline() blocks: a hub stuck before its first line is killed, which ends it.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            while True:
                line = proc.stdout.readline()
                if not line:
                    self.proc = None
                    proc.wait(timeout=10)
                    late = watchdog.finished.is_set()
                    why = f"was not up after {timeout} s" if late else "exited"
                    raise RuntimeError(f"the hub {why}: {self.stderr_text()[-2000:]}")
                match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    return self.url
        finally:
            watchdog.cancel()

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

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Sends `sig` to the running hub and returns its exit code once it has exited."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def stop(self, grace: float = 5.0) -> None:
        """Stops the hub if it runs (a no-op otherwise): SIGTERM and its graceful shutdown (so a
        hub under coverage saves what it measured), SIGKILL after `grace` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        self.proc = None


@contextlib.contextmanager
def hub_process(*args: str) -> Iterator[HubProcess]:
    """A started `HubProcess` (with `crdtdoc serve` `args`) on a fresh database, for a `with`
    block."""
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp) / "hub.db", 0, *args)
        hub.start()
        try:
            yield hub
        finally:
            hub.stop()


NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


class RedisServer:
    """A `redis-server` of the caller's own on a free port, which it may stop and start again."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServiceUnavailable("redis-server is not installed")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started `RedisServer`, stopped after the `with` block."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_database(admin_url: str, prefix: str = "crdtdoc") -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server of `admin_url` (a URL of a database the
    user may create databases from); yields its URL and drops it afterwards."""
    try:
        import psycopg
    except ImportError:
        raise ServiceUnavailable("psycopg is not installed") from None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as db:
            db.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"PostgreSQL is not reachable at {admin_url}: {exc}") from None
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""`GroupCommitter`: group commit for any store, on the hub's event loop.

Rooms hand the committer each update they commit (`append`) and, now and then, a snapshot of their
whole state (`compact`). Whatever accumulates while one transaction runs goes into the next one, so
many small updates cost one commit. When a transaction commits, each room that had writes in it is
told (the callback its `on_taken` returned), which is when the hub may acknowledge them as durable.
A failed transaction keeps its writes and is retried every `RETRY_SECONDS`: nothing handed over
is dropped. While it fails the committer is *failing* (`failure` holds the database's own words,
"database or disk is full"); that is logged once when it starts (or its reason changes) and once
when a commit succeeds again, not at every retry, and the hub is told through `on_failed` (every
failed attempt) and `on_recovered` (readiness, metrics, clients waiting in `flush`).

Subclasses say how a batch is written (`_write`) and how the store is closed (`_close_store`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from crdtdoc.errors import StorageError
from crdtdoc.provenance import StoredRecord

log = logging.getLogger("crdtdoc.hub.store")

RETRY_SECONDS = 1.0
"""Seconds between two attempts at a failing transaction."""
MAX_REASON = 200
"""Characters of a database error kept as the reason a store is failing."""


class StoreFailure(StorageError):
    """A store transaction failed. `reason` is the database's own words ("database or disk is
    full", "attempt to write a readonly database"), not the database's file or URL: it is shown on
    `/readyz` and sent to clients; the message adds what was being done (and `detail`, the
    whole error, when the reason leaves some out)."""

    def __init__(self, what: str, reason: str, detail: str | None = None) -> None:
        reason = reason.strip().splitlines()[0][:MAX_REASON] if reason.strip() else "unknown"
        super().__init__(f"cannot {what}: {detail or reason}")
        self.reason = reason


def failure_reason(exc: BaseException) -> str:
    """What to say about a failed commit: a `StoreFailure`'s reason, else only the kind of
    error (its text, which may hold anything, goes to the log)."""
    if isinstance(exc, StoreFailure):
        return exc.reason
    return f"unexpected {type(exc).__name__}"


@dataclass
class StoredRoom:
    """A room as stored: its snapshot (covering log entries up to `snapshot_seq`) and the log
    entries after it, in order."""

    snapshot: bytes | None = None
    snapshot_seq: int = 0
    updates: list[bytes] = field(default_factory=list)
    last_seq: int = 0
    marks: list[tuple[float, bytes]] = field(default_factory=list)  # (time, version), by time


@dataclass(frozen=True, slots=True)
class Append:
    """Append `data` to the room's log at `seq` (0: the store numbers it), and store or replace
    the provenance rows `records` (`crdtdoc.server.provenance`) in the same transaction."""

    room: str
    seq: int
    data: bytes
    records: tuple[StoredRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class HorizonWrite:
    """What a compaction stores of a room's history horizon (`crdtdoc.server.room_log`): a new
    mark (Unix time, encoded version) if one is due, and what it lets go: marks before
    `marks_from`, provenance rows before `records_from`."""

    mark: tuple[float, bytes] | None
    marks_from: float
    records_from: float


@dataclass(frozen=True, slots=True)
class Compact:
    """Replace the room's snapshot with `data`, which covers every log entry up to `seq` (and
    keep the history horizon's marks as `horizon` says)."""

    room: str
    seq: int
    data: bytes
    horizon: HorizonWrite | None = None


Write = Append | Compact


def record_rows(writes: list[Write]) -> list[tuple[object, ...]]:
    """The provenance rows of a batch's appends as (room, hub, n, client, start, end, seen,
    kind, at), the last version of each row only (a row extended twice in a batch)."""
    rows: dict[tuple[str, str, int], tuple[object, ...]] = {}
    for write in writes:
        if isinstance(write, Append):
            for r in write.records:
                rows[(write.room, r.hub, r.n)] = (write.room, *r)
    return list(rows.values())


DurableCallback = Callable[[], Callable[[], None]]
"""Called when a room's writes are taken into a batch; returns what to call once it commits."""

AppendedHook = Callable[[str, int, bytes], None]
"""Called with (room, seq, data) for every append, once its transaction committed."""


class GroupCommitter:
    """Writes accumulate while a transaction runs, then go in the next one (see the module)."""

    def __init__(self) -> None:
        self._writes: list[Write] = []
        self._rooms: dict[str, DurableCallback] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_appended: AppendedHook | None = None
        self.on_committed: Callable[[float], None] | None = None  # seconds one commit took
        self.on_failed: Callable[[str], None] | None = None  # each failed attempt, its reason
        self.on_recovered: Callable[[], None] | None = None  # a commit after failed ones
        self.commits = 0
        self.commit_seconds = 0.0
        self.failure: str | None = None  # why the store cannot commit now (None: it can)
        self.failed_commits = 0  # failed attempts, ever
        self._failing_since = 0.0
        self._failed_in_row = 0

    async def load(self, room: str) -> StoredRoom:
        """The room as stored. Raises `StorageError`."""
        raise NotImplementedError

    async def _write(self, writes: list[Write]) -> list[int]:
        """Writes the batch in one transaction; returns the log position of each `Append`, in
        order. Raises `StorageError` (the batch is then retried)."""
        raise NotImplementedError

    async def _close_store(self) -> None:
        raise NotImplementedError

    async def provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        """The room's provenance rows, in (hub, n) order, past `after`: at most `limit` and
        about `max_bytes` (at least one), and whether more follow. Raises `StorageError`."""
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="committer")

    def append(
        self,
        room: str,
        seq: int,
        data: bytes,
        on_taken: DurableCallback,
        records: tuple[StoredRecord, ...] = (),
    ) -> None:
        self._add(Append(room, seq, data, records), on_taken)

    def compact(
        self,
        room: str,
        seq: int,
        data: bytes,
        on_taken: DurableCallback,
        horizon: HorizonWrite | None = None,
    ) -> None:
        self._add(Compact(room, seq, data, horizon), on_taken)

    def touch(self, room: str, on_taken: DurableCallback) -> None:
        """Asks for the room's durability callback after the next commit, even if the room
        writes nothing (its state became durable some other way)."""
        self._rooms[room] = on_taken
        self._idle.clear()
        self._wakeup.set()

    def _add(self, write: Write, on_taken: DurableCallback) -> None:
        if self._closing and self._task is None:
            raise StorageError("the hub's store is closed")
        self._writes.append(write)
        self.touch(write.room, on_taken)

    async def drained(self) -> None:
        """Returns once everything handed over so far is durable."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._writes and not self._rooms:
                if self._closing:
                    return
                continue
            writes, self._writes = self._writes, []
            callbacks = [taken() for taken in self._rooms.values()]
            self._rooms = {}
            started = time.perf_counter()
            while True:
                try:
                    seqs = await self._write(writes) if writes else []
                    break
                except Exception as exc:  # disk full, database down...: keep the data, retry
                    self._failed(exc)
                    await asyncio.sleep(RETRY_SECONDS)
            if self.failure is not None:
                self._recovered()
            self.commits += 1
            took = time.perf_counter() - started
            self.commit_seconds += took
            if self.on_committed is not None and writes:
                self.on_committed(took)
            if self.on_appended is not None:
                appends = [w for w in writes if isinstance(w, Append)]
                for write, seq in zip(appends, seqs, strict=True):
                    self.on_appended(write.room, seq, write.data)
            for done in callbacks:
                done()
            if not self._writes and not self._rooms:
                self._idle.set()
                if self._closing:
                    return
            else:
                self._wakeup.set()

    def _failed(self, exc: Exception) -> None:
        """A transaction failed: logged when the store starts failing or the reason changes."""
        reason = failure_reason(exc)
        self.failed_commits += 1
        self._failed_in_row += 1
        if reason != self.failure:
            if self.failure is None:
                self._failing_since = time.monotonic()
            self.failure = reason
            log.error(
                "store cannot commit; retrying until it can",
                extra={"reason": reason, "error": str(exc), "retry_every": RETRY_SECONDS},
            )
        if self.on_failed is not None:
            try:
                self.on_failed(reason)
            except Exception:  # a hook must never stop the retries
                log.exception("store failure hook failed")

    def _recovered(self) -> None:
        log.warning(
            "store commits again",
            extra={
                "was": self.failure,
                "failed_seconds": round(time.monotonic() - self._failing_since, 3),
                "failed_attempts": self._failed_in_row,
            },
        )
        self.failure = None
        self._failed_in_row = 0
        if self.on_recovered is not None:
            try:
                self.on_recovered()
            except Exception:
                log.exception("store recovery hook failed")

    async def close(self) -> None:
        """Writes what is queued, then stops and closes the store."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._close_store()

"""Durable room storage on SQLite (WAL): an append-only update log plus one snapshot per room.

`SqliteStore` is blocking and owned by one thread; `SqliteCommitter` is its asyncio face (group
commit, see `crdtdoc.server.commit`), running every transaction on that thread. A snapshot and the
deletion of the log entries it covers are one transaction, queued behind every append it covers, so
compaction never loses a write and a crash at any instant leaves either the old log or the new
snapshot. One hub process owns the file: it numbers each room's log itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from crdtdoc.errors import StorageError
from crdtdoc.provenance import RowPage, StoredRecord, prune_ranges
from crdtdoc.server.commit import (
    Append,
    GroupCommitter,
    HorizonWrite,
    StoredRoom,
    StoreFailure,
    Write,
    record_rows,
)

SCHEMA_VERSION = 1
_PUT_SNAPSHOT = "INSERT OR REPLACE INTO snapshots(room, seq, data) VALUES (?, ?, ?)"
_PUT_RECORD = "INSERT OR REPLACE INTO provenance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_RECORD_COLUMNS = "hub, n, client, first, stop, seen, kind, at"
# Per chain: whether it has rows within the horizon, and its newest whole row before it.
_CHAINS = """
SELECT hub, max(at >= ?1), max(CASE WHEN kind IN (1, 3) AND at < ?1 THEN n END)
FROM provenance WHERE room = ?2 GROUP BY hub"""
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    room TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    room TEXT PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS provenance (
    room TEXT NOT NULL, hub TEXT NOT NULL, n INTEGER NOT NULL, client INTEGER NOT NULL,
    first INTEGER NOT NULL, stop INTEGER NOT NULL, seen BLOB NOT NULL, kind INTEGER NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (room, hub, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_marks (
    room TEXT NOT NULL, at REAL NOT NULL, version BLOB NOT NULL, PRIMARY KEY (room, at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    room TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, agent TEXT NOT NULL,
    token INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (room, name)
);
CREATE TABLE IF NOT EXISTS fencing (
    room TEXT NOT NULL, name TEXT NOT NULL, token INTEGER NOT NULL, PRIMARY KEY (room, name)
);
CREATE TABLE IF NOT EXISTS sequences (
    room TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (room, name)
);
"""


@dataclass(frozen=True, slots=True)
class StoredLease:
    room: str
    name: str
    owner: str  # "agent#client id": who may renew and release it
    agent: str
    token: int  # fencing token
    expires_at: float  # Unix time


class SqliteStore:
    """Blocking SQLite access. Use from one thread only (the committer's)."""

    def __init__(self, path: str, *, synchronous: str = "full") -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._check_writable()  # first: a read-only file fails here with the reason
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise StorageError(
                    f"{path} uses storage schema {row[0]}; this crdtdoc reads schema "
                    f"{SCHEMA_VERSION}"
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the hub database {path}: {exc}") from None

    def _check_writable(self) -> None:
        """Refuses a database the hub could read but never write (a read-only file, directory
        or file system, an immutable file): SQLite opens such a file read-only without a word,
        and the hub would serve without ever acknowledging a write. The test is a real write in
        a transaction that is rolled back, so nothing changes and no disk space is needed."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(_SCHEMA.split(";")[0])  # the meta table, for a new file
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('write_check', '')")
        except sqlite3.Error as exc:
            self._rollback()
            self._db.close()
            raise StorageError(
                f"the hub database {self.path} cannot be written: {exc} (the hub needs to write "
                "the file and create files beside it: check their permissions and that the "
                "file system is mounted read-write)"
            ) from None
        self._rollback()

    def load(self, room: str) -> StoredRoom:
        try:
            stored = StoredRoom()
            row = self._db.execute(
                "SELECT seq, data FROM snapshots WHERE room = ?", (room,)
            ).fetchone()
            if row is not None:
                stored.snapshot_seq, stored.snapshot = row[0], bytes(row[1])
            stored.last_seq = stored.snapshot_seq
            for seq, data in self._db.execute(
                "SELECT seq, data FROM updates WHERE room = ? AND seq > ? ORDER BY seq",
                (room, stored.snapshot_seq),
            ):
                stored.updates.append(bytes(data))
                stored.last_seq = seq
            stored.marks = [
                (float(at), bytes(version))
                for at, version in self._db.execute(
                    "SELECT at, version FROM history_marks WHERE room = ? ORDER BY at", (room,)
                )
            ]
            return stored
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read room {room!r} from {self.path}: {exc}") from None

    def commit(self, writes: list[Write]) -> None:
        """Writes everything in one transaction (all or nothing)."""
        with self._transaction(f"write to {self.path}") as db:
            db.executemany(_PUT_RECORD, record_rows(writes))
            appends = [(w.room, w.seq, w.data) for w in writes if isinstance(w, Append)]
            if len(appends) == len(writes):
                db.executemany("INSERT INTO updates(room, seq, data) VALUES (?, ?, ?)", appends)
                return
            for w in writes:
                if isinstance(w, Append):
                    db.execute(
                        "INSERT INTO updates(room, seq, data) VALUES (?, ?, ?)",
                        (w.room, w.seq, w.data),
                    )
                else:
                    db.execute(_PUT_SNAPSHOT, (w.room, w.seq, w.data))
                    db.execute("DELETE FROM updates WHERE room = ? AND seq <= ?", (w.room, w.seq))
                    if w.horizon is not None:
                        _keep_horizon(db, w.room, w.horizon)

    def provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        """`read_provenance` on this store's own connection."""
        return read_provenance(self._db, room, after, limit, max_bytes)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction: committed if the block completes, rolled back otherwise;
        SQLite's errors become `StoreFailure("cannot <what>: ...")` with SQLite's own words as
        the reason. SQLite may already have rolled the transaction back itself (it does on
        SQLITE_FULL, for one): then no ROLLBACK is issued, whose "no transaction is active"
        would hide the real error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreFailure(what, str(exc)) from None

    def _rollback(self) -> None:
        """Ends a failed transaction, if one is still open; the error that failed it is what
        counts, so a failing ROLLBACK (a broken disk) is not raised over it."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # -- coordination state (leases, fencing tokens, sequences) ----------------------------

    def load_coordination(self) -> tuple[list[StoredLease], dict[tuple[str, str], int]]:
        """Every lease held and the last fencing token of every lease name."""
        try:
            leases = [
                StoredLease(*row)
                for row in self._db.execute(
                    "SELECT room, name, owner, agent, token, expires_at FROM leases"
                )
            ]
            tokens = {
                (r, n): t for r, n, t in self._db.execute("SELECT room, name, token FROM fencing")
            }
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read leases from {self.path}: {exc}") from None
        return leases, tokens

    def grant_lease(self, lease: StoredLease) -> None:
        """Records `lease` as held, and its token as the newest for its name (one transaction)."""
        self._write(
            (
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
                (lease.room, lease.name, lease.owner, lease.agent, lease.token, lease.expires_at),
            ),
            (
                "INSERT OR REPLACE INTO fencing VALUES (?, ?, ?)",
                (lease.room, lease.name, lease.token),
            ),
        )

    def renew_lease(self, room: str, name: str, token: int, expires_at: float) -> None:
        self._write(
            (
                "UPDATE leases SET expires_at = ? WHERE room = ? AND name = ? AND token = ?",
                (expires_at, room, name, token),
            ),
        )

    def drop_lease(self, room: str, name: str, token: int) -> None:
        self._write(
            ("DELETE FROM leases WHERE room = ? AND name = ? AND token = ?", (room, name, token)),
        )

    def next_number(self, room: str, name: str) -> int:
        """The sequence's next value, committed before it is returned."""
        with self._transaction(f"advance sequence {name!r}") as db:
            row = db.execute(
                "SELECT value FROM sequences WHERE room = ? AND name = ?", (room, name)
            ).fetchone()
            value = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO sequences VALUES (?, ?, ?)", (room, name, value))
        return int(value)

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        with self._transaction(f"write to {self.path}") as db:
            for sql, params in statements:
                db.execute(sql, params)

    def rooms(self) -> list[str]:
        rows = self._db.execute(
            "SELECT room FROM snapshots UNION SELECT DISTINCT room FROM updates ORDER BY 1"
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()


def _keep_horizon(db: sqlite3.Connection, room: str, horizon: HorizonWrite) -> None:
    """Stores a compaction's history mark and lets go of what the horizon passed."""
    if horizon.mark is not None:
        db.execute("INSERT OR REPLACE INTO history_marks VALUES (?, ?, ?)", (room, *horizon.mark))
    db.execute("DELETE FROM history_marks WHERE room = ? AND at < ?", (room, horizon.marks_from))
    cutoff = horizon.records_from
    for hub, recent, whole in db.execute(_CHAINS, (cutoff, room)).fetchall():
        for lo, hi in prune_ranges(bool(recent), whole):
            db.execute(
                "DELETE FROM provenance WHERE room = ? AND hub = ? AND n >= ? AND n < ? AND at < ?",
                (room, hub, lo, hi, cutoff),
            )


def read_provenance(
    db: sqlite3.Connection, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
) -> tuple[list[StoredRecord], bool]:
    """The room's provenance rows in (hub, n) order, past `after`: at most `limit`, and no
    more than about `max_bytes` (at least one), read one by one; and whether more follow."""
    sql = f"SELECT {_RECORD_COLUMNS} FROM provenance WHERE room = ?"
    params: tuple[object, ...] = (room,)
    if after is not None:
        sql += " AND (hub > ? OR (hub = ? AND n > ?))"
        params += (after[0], after[0], after[1])
    page = RowPage(limit, max_bytes)
    try:
        for columns in db.execute(f"{sql} ORDER BY hub, n LIMIT ?", (*params, limit + 1)):
            if not page.take(columns):
                break
        return page.rows, page.more
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read provenance of {room!r}: {exc}") from None


class SqliteCommitter(GroupCommitter):
    """Group commit into a `SqliteStore`, on the store's own thread."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__()
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crdtdoc-store")
        # Reads agents ask for (provenance) take their own connection and thread: WAL lets them
        # run beside commits, which they must never delay.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crdtdoc-reads")
        self._read_db: sqlite3.Connection | None = None

    async def run_blocking(self, fn: Callable[[], _T]) -> _T:
        """Runs `fn` on the store's thread (reads go there too: one connection, one thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def load(self, room: str) -> StoredRoom:
        return await self.run_blocking(partial(self.store.load, room))

    async def _write(self, writes: list[Write]) -> list[int]:
        await self.run_blocking(partial(self.store.commit, writes))
        return [w.seq for w in writes if isinstance(w, Append)]

    async def provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        return await asyncio.get_running_loop().run_in_executor(
            self._reads, partial(self._read_provenance, room, after, limit, max_bytes)
        )

    def _read_provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        if self._read_db is None:
            try:
                self._read_db = sqlite3.connect(self.store.path, check_same_thread=False)
                self._read_db.execute("PRAGMA busy_timeout=5000")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open {self.store.path} to read: {exc}") from None
        return read_provenance(self._read_db, room, after, limit, max_bytes)

    async def _close_store(self) -> None:
        await self.run_blocking(self.store.close)
        self._executor.shutdown(wait=True)
        if self._read_db is not None:
            await asyncio.get_running_loop().run_in_executor(self._reads, self._read_db.close)
        self._reads.shutdown(wait=True)

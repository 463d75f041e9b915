"""PostgreSQL storage shared by several hubs: each room's log, numbered without gaps, its snapshot,
and (see `crdtdoc.server.shared_coordination`) the coordination tables.

Why the numbering is gapless and in commit order: an append adds to its room's `last_seq` in
`crdtdoc_rooms`, which locks that row until the transaction ends. Appends to one room, from any
hub, are therefore serialized, and entry N+1 can only commit after entry N. A hub that has applied
entries 1..N of a room knows exactly what it lacks: everything above N. A batch locks its rooms in
name order, so two hubs' batches never deadlock.

Reads that combine the snapshot and the log run in one REPEATABLE READ transaction: a compaction
committing in between cannot make them miss the entries it folded into the new snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool

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

log = logging.getLogger("crdtdoc.hub.store")

SCHEMA_VERSION = "1"
FETCH_LIMIT = 1000
"""Log entries one catch-up read returns at most (the caller reads again for more)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crdtdoc_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS crdtdoc_rooms (
    room text PRIMARY KEY, last_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS crdtdoc_updates (
    room text NOT NULL, seq bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (room, seq)
);
CREATE TABLE IF NOT EXISTS crdtdoc_snapshots (
    room text PRIMARY KEY, seq bigint NOT NULL, data bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS crdtdoc_provenance (
    room text NOT NULL, hub text NOT NULL, n bigint NOT NULL, client bigint NOT NULL,
    first bigint NOT NULL, stop bigint NOT NULL, seen bytea NOT NULL, kind smallint NOT NULL,
    at double precision NOT NULL, PRIMARY KEY (room, hub, n)
);
CREATE TABLE IF NOT EXISTS crdtdoc_history_marks (
    room text NOT NULL, at double precision NOT NULL, version bytea NOT NULL,
    PRIMARY KEY (room, at)
);
CREATE TABLE IF NOT EXISTS crdtdoc_leases (
    room text NOT NULL, name text NOT NULL, owner text NOT NULL, agent text NOT NULL,
    token bigint NOT NULL, expires_at timestamptz NOT NULL, PRIMARY KEY (room, name)
);
-- When the lease was granted (a claim's grace, see server.coordination.claim_abandoned); added
-- after schema 1 shipped, so older tables gain it here, their rows counting as just granted.
ALTER TABLE crdtdoc_leases ADD COLUMN IF NOT EXISTS granted_at timestamptz NOT NULL DEFAULT now();
CREATE TABLE IF NOT EXISTS crdtdoc_fencing (
    room text NOT NULL, name text NOT NULL, token bigint NOT NULL, PRIMARY KEY (room, name)
);
CREATE TABLE IF NOT EXISTS crdtdoc_sequences (
    room text NOT NULL, name text NOT NULL, value bigint NOT NULL, PRIMARY KEY (room, name)
);
CREATE TABLE IF NOT EXISTS crdtdoc_waiters (
    id bigserial PRIMARY KEY, room text NOT NULL, name text NOT NULL, owner text NOT NULL,
    agent text NOT NULL, ttl double precision NOT NULL, deadline timestamptz NOT NULL,
    outcome text
);
CREATE INDEX IF NOT EXISTS crdtdoc_waiters_queue ON crdtdoc_waiters (room, name, id);
"""
_PUT_RECORD = (
    "INSERT INTO crdtdoc_provenance VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (room, hub, n) DO UPDATE SET stop = EXCLUDED.stop"
)
_SCHEMA_LOCK = 0x63726474  # pg_advisory_lock key: one hub creates the schema at a time


@dataclass
class Fetched:
    """What a lagging hub reads to catch up on a room: the snapshot, when the log entries it needs
    were compacted into it, then the entries after `after` (or after the snapshot), in order."""

    snapshot: bytes | None = None
    snapshot_seq: int = 0
    entries: list[tuple[int, bytes]] = field(default_factory=list)
    last_seq: int = 0  # the room's newest entry when this was read


def _failure(what: str, exc: psycopg.Error) -> StoreFailure:
    """psycopg's error as a `StoreFailure`: the server's own message as the reason (a client-side
    error, such as a lost connection, names the database host: the reason then says only that
    the database cannot be reached, and the whole error stays in the message, for the logs).
    psycopg never lets a failed ROLLBACK hide the error that caused it."""
    if exc.sqlstate is not None and exc.diag.message_primary:
        reason = exc.diag.message_primary
    else:
        reason = f"the database cannot be reached ({type(exc).__name__})"
    return StoreFailure(f"{what} in PostgreSQL", reason, detail=str(exc))


class PostgresStore:
    """Async access to the shared database through a small connection pool."""

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(
            url,
            min_size=2,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True},
            name="crdtdoc",
        )

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=10.0)
            async with self._pool.connection() as db:
                await db.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
                try:
                    await db.execute(_SCHEMA)
                    cur = await db.execute("SELECT value FROM crdtdoc_meta WHERE key = 'schema'")
                    row = await cur.fetchone()
                    if row is None:
                        await db.execute(
                            "INSERT INTO crdtdoc_meta VALUES ('schema', %s)", (SCHEMA_VERSION,)
                        )
                    elif row[0] != SCHEMA_VERSION:
                        raise StorageError(
                            f"the database uses crdtdoc storage schema {row[0]}; this crdtdoc "
                            f"reads schema {SCHEMA_VERSION}"
                        )
                finally:
                    await db.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._pool.close()
            raise StorageError(
                f"cannot open the PostgreSQL store {redacted(self.url)}: {exc}"
            ) from None
        except BaseException:
            await self._pool.close()
            raise

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(
        self, what: str, *, isolation: IsolationLevel | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction; psycopg's errors become `StoreFailure("cannot <what> ...")`."""
        try:
            async with self._pool.connection() as db:
                if isolation is not None:
                    await db.set_isolation_level(isolation)
                try:
                    async with db.transaction():
                        yield db
                finally:
                    if isolation is not None:
                        await db.set_isolation_level(None)
        except psycopg.Error as exc:
            raise _failure(what, exc) from None

    # -- reading -----------------------------------------------------------------------------

    async def load(self, room: str) -> StoredRoom:
        fetched = await self.fetch(room, 0, limit=None)
        async with self.transaction(f"read history marks of {room!r}") as db:
            cur = await db.execute(
                "SELECT at, version FROM crdtdoc_history_marks WHERE room = %s ORDER BY at",
                (room,),
            )
            marks = [(float(at), bytes(version)) for at, version in await cur.fetchall()]
        return StoredRoom(
            snapshot=fetched.snapshot,
            snapshot_seq=fetched.snapshot_seq,
            updates=[data for _, data in fetched.entries],
            last_seq=fetched.last_seq,
            marks=marks,
        )

    async def fetch(self, room: str, after: int, *, limit: int | None = FETCH_LIMIT) -> Fetched:
        """What a hub that has entries 1..`after` of `room` lacks (at most `limit` entries)."""
        async with self.transaction(
            f"read room {room!r}", isolation=IsolationLevel.REPEATABLE_READ
        ) as db:
            return await fetch_in(db, room, after, limit=limit)

    async def last_seqs(self, rooms: list[str]) -> dict[str, int]:
        """The newest log position of each of `rooms` (absent: nothing stored yet)."""
        async with self.transaction("read room positions") as db:
            cur = await db.execute(
                "SELECT room, last_seq FROM crdtdoc_rooms WHERE room = ANY(%s)", (rooms,)
            )
            return {room: seq for room, seq in await cur.fetchall()}

    async def rooms(self) -> list[str]:
        async with self.transaction("list rooms") as db:
            cur = await db.execute("SELECT room FROM crdtdoc_rooms ORDER BY room")
            return [r for (r,) in await cur.fetchall()]

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self, appends: list[tuple[str, bytes]], records: list[tuple[object, ...]] | None = None
    ) -> list[int]:
        """Appends every (room, data) in one transaction, with the provenance rows `records`
        (`crdtdoc.server.commit.record_rows`); returns each append's log position."""
        async with self.transaction("append updates") as db:
            seqs = await append_in(db, appends)
            if records:
                async with db.cursor() as cur:
                    await cur.executemany(_PUT_RECORD, records)
            return seqs

    async def provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        """The room's provenance rows in (hub, n) order, past `after`: at most `limit` and
        about `max_bytes` (at least one), read a few at a time; and whether more follow."""
        sql = (
            "SELECT hub, n, client, first, stop, seen, kind, at FROM crdtdoc_provenance "
            "WHERE room = %s"
        )
        params: tuple[object, ...] = (room,)
        if after is not None:
            sql += " AND (hub > %s OR (hub = %s AND n > %s))"
            params += (after[0], after[0], after[1])
        page = RowPage(limit, max_bytes)
        async with (
            self.transaction(f"read provenance of {room!r}") as db,
            db.cursor(name="crdtdoc_provenance") as cur,
        ):
            cur.itersize = 50
            await cur.execute(f"{sql} ORDER BY hub, n LIMIT %s", (*params, limit + 1))
            async for columns in cur:
                if not page.take(columns):
                    break
        return page.rows, page.more

    async def compact(
        self, room: str, seq: int, snapshot: bytes, horizon: HorizonWrite | None = None
    ) -> bool:
        """Replaces the room's snapshot with `snapshot`, which covers log entries 1..`seq`, and
        deletes those entries (and keeps the history horizon's marks as `horizon` says): one
        transaction. Returns False without writing when another hub is
        compacting the room right now, or a snapshot at or past `seq` is already stored."""
        async with self.transaction(f"compact room {room!r}") as db:
            cur = await db.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('crdtdoc.compact:' || %s, 0))",
                (room,),
            )
            got = await cur.fetchone()
            if not got or not got[0]:
                return False
            # The room's row lock: a reader holding it (a guarded commit) sees the log whole.
            await db.execute("SELECT 1 FROM crdtdoc_rooms WHERE room = %s FOR UPDATE", (room,))
            cur = await db.execute("SELECT seq FROM crdtdoc_snapshots WHERE room = %s", (room,))
            row = await cur.fetchone()
            if row is not None and row[0] >= seq:
                return False
            await db.execute(
                "INSERT INTO crdtdoc_snapshots VALUES (%s, %s, %s) ON CONFLICT (room) "
                "DO UPDATE SET seq = EXCLUDED.seq, data = EXCLUDED.data",
                (room, seq, snapshot),
            )
            await db.execute(
                "DELETE FROM crdtdoc_updates WHERE room = %s AND seq <= %s", (room, seq)
            )
            if horizon is not None:
                await _keep_horizon(db, room, horizon)
            return True


async def _keep_horizon(db: AsyncConnection, room: str, horizon: HorizonWrite) -> None:
    """Stores a compaction's history mark and lets go of what the horizon passed."""
    if horizon.mark is not None:
        await db.execute(
            "INSERT INTO crdtdoc_history_marks VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (room, *horizon.mark),
        )
    await db.execute(
        "DELETE FROM crdtdoc_history_marks WHERE room = %s AND at < %s",
        (room, horizon.marks_from),
    )
    cutoff = horizon.records_from
    cur = await db.execute(
        "SELECT hub, bool_or(at >= %s), max(CASE WHEN kind IN (1, 3) AND at < %s THEN n END) "
        "FROM crdtdoc_provenance WHERE room = %s GROUP BY hub",
        (cutoff, cutoff, room),
    )
    for hub, recent, whole in await cur.fetchall():
        for lo, hi in prune_ranges(bool(recent), whole):
            await db.execute(
                "DELETE FROM crdtdoc_provenance WHERE room = %s AND hub = %s AND n >= %s "
                "AND n < %s AND at < %s",
                (room, hub, lo, hi, cutoff),
            )


async def fetch_in(
    db: AsyncConnection, room: str, after: int, *, limit: int | None = FETCH_LIMIT
) -> Fetched:
    """`PostgresStore.fetch` inside the caller's transaction, which must see one consistent
    state: REPEATABLE READ, or a lock on the room's row (compaction takes it too)."""
    fetched = Fetched()
    cur = await db.execute("SELECT last_seq FROM crdtdoc_rooms WHERE room = %s", (room,))
    row = await cur.fetchone()
    fetched.last_seq = row[0] if row else 0
    if fetched.last_seq <= after:
        return fetched
    cur = await db.execute("SELECT seq, data FROM crdtdoc_snapshots WHERE room = %s", (room,))
    row = await cur.fetchone()
    if row is not None and row[0] > after:
        fetched.snapshot_seq, fetched.snapshot = row[0], bytes(row[1])
        after = row[0]
    sql = "SELECT seq, data FROM crdtdoc_updates WHERE room = %s AND seq > %s ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cur = await db.execute(sql, (room, after))
    fetched.entries = [(seq, bytes(data)) for seq, data in await cur.fetchall()]
    return fetched


async def append_in(db: AsyncConnection, appends: list[tuple[str, bytes]]) -> list[int]:
    """Appends inside the caller's transaction (see the module docstring for the numbering)."""
    by_room: dict[str, list[int]] = {}
    for index, (room, _) in enumerate(appends):
        by_room.setdefault(room, []).append(index)
    seqs = [0] * len(appends)
    rows = []
    for room in sorted(by_room):  # a fixed lock order: concurrent batches cannot deadlock
        indexes = by_room[room]
        cur = await db.execute(
            "INSERT INTO crdtdoc_rooms AS r VALUES (%s, %s) ON CONFLICT (room) "
            "DO UPDATE SET last_seq = r.last_seq + EXCLUDED.last_seq RETURNING last_seq",
            (room, len(indexes)),
        )
        row = await cur.fetchone()
        if row is None:
            raise StorageError(f"PostgreSQL returned no log position for room {room!r}")
        first = row[0] - len(indexes) + 1
        for offset, index in enumerate(indexes):
            seqs[index] = first + offset
            rows.append((room, first + offset, appends[index][1]))
    async with db.cursor() as cur:
        await cur.executemany("INSERT INTO crdtdoc_updates VALUES (%s, %s, %s)", rows)
    return seqs


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


class PostgresCommitter(GroupCommitter):
    """Group commit into the shared PostgreSQL log; the database numbers each room's entries."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__()
        self.store = store

    async def load(self, room: str) -> StoredRoom:
        return await self.store.load(room)

    async def _write(self, writes: list[Write]) -> list[int]:
        appends = [(w.room, w.data) for w in writes if isinstance(w, Append)]
        if len(appends) != len(writes):
            raise StorageError("shared rooms compact through PostgresStore.compact")
        return await self.store.append(appends, record_rows(writes))

    async def provenance(
        self, room: str, after: tuple[str, int] | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredRecord], bool]:
        return await self.store.provenance(room, after, limit, max_bytes)

    async def _close_store(self) -> None:
        await asyncio.shield(self.store.close())

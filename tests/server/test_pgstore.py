"""The shared PostgreSQL log: gapless positions in commit order under concurrent hubs, compaction
that two hubs never run at once and that a crash cannot half-do, consistent catch-up reads."""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest

from crdtdoc import Replica
from crdtdoc.errors import StorageError
from crdtdoc.server.pgstore import PostgresStore, redacted
from tests.support.aio import run
from tests.support.builders import content, writer_stream


def test_concurrent_appenders_get_gapless_positions_in_commit_order(pg_url: str) -> None:
    """Two stores (two hubs) append to three rooms from 8 tasks at once. Each room's positions
    are exactly 1..N, and a reader that sees position N always sees every position below it."""

    async def body() -> None:
        stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
        for store in stores:
            await store.open()
        rooms = ["r1", "r2", "r3"]
        seen_gap: list[str] = []
        done = asyncio.Event()

        async def appender(i: int) -> None:
            rng = random.Random(i)
            store = stores[i % 2]
            for n in range(25):
                batch = [(rng.choice(rooms), f"{i}:{n}:{k}".encode()) for k in range(3)]
                seqs = await store.append(batch)
                assert len(seqs) == 3

        async def reader() -> None:
            while not done.is_set():
                for room in rooms:
                    fetched = await stores[0].fetch(room, 0, limit=None)
                    positions = [seq for seq, _ in fetched.entries]
                    if positions != list(range(1, len(positions) + 1)):
                        seen_gap.append(f"{room}: {positions}")
                await asyncio.sleep(0)

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(appender(i) for i in range(8)))
        done.set()
        await reading
        total = 0
        for room in rooms:
            fetched = await stores[1].fetch(room, 0, limit=None)
            positions = [seq for seq, _ in fetched.entries]
            assert positions == list(range(1, len(positions) + 1))
            assert fetched.last_seq == len(positions)
            total += len(positions)
        assert total == 8 * 25 * 3 and not seen_gap, seen_gap[:3]
        for store in stores:
            await store.close()

    run(body(), timeout=90)


def test_compaction_is_exclusive_and_never_goes_backwards(pg_url: str) -> None:
    async def body() -> None:
        store = PostgresStore(pg_url)
        await store.open()
        updates = writer_stream(seed=3, steps=30)
        n = len(updates)
        await store.append([("doc", u) for u in updates])
        snapshot = _replay(updates[:20]).encode_update()
        with psycopg.connect(pg_url, autocommit=True) as other:  # another hub compacting now
            other.execute("SELECT pg_advisory_lock(hashtextextended('crdtdoc.compact:doc', 0))")
            assert not await store.compact("doc", 20, snapshot)
            other.execute("SELECT pg_advisory_unlock_all()")
        assert await store.compact("doc", 20, snapshot)
        assert not await store.compact("doc", 10, _replay(updates[:10]).encode_update())
        fetched = await store.fetch("doc", 5)  # behind the snapshot: gets it, then the tail
        assert (fetched.snapshot_seq, [s for s, _ in fetched.entries]) == (
            20,
            list(range(21, n + 1)),
        )
        assert (await store.fetch("doc", 25)).snapshot is None
        loaded = await store.load("doc")
        assert content(_replay([loaded.snapshot or b"", *loaded.updates])) == content(
            _replay(updates)
        )
        await store.close()

    run(body(), timeout=60)


def test_a_hub_dying_mid_compaction_leaves_the_old_log(pg_url: str) -> None:
    async def body() -> None:
        store = PostgresStore(pg_url)
        await store.open()
        updates = writer_stream(seed=5, steps=20)
        await store.append([("doc", u) for u in updates])
        dying = psycopg.connect(pg_url)  # the compaction's statements, then the process dies
        dying.execute("INSERT INTO crdtdoc_snapshots VALUES ('doc', 20, %s)", (b"half",))
        dying.execute("DELETE FROM crdtdoc_updates WHERE room = 'doc' AND seq <= 20")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(%s)", (dying.info.backend_pid,)
            )  # like SIGKILL of the hub: no commit ever arrives
        loaded = await store.load("doc")
        assert loaded.snapshot is None and len(loaded.updates) == len(updates)
        assert content(_replay(loaded.updates)) == content(_replay(updates))
        await store.close()

    run(body(), timeout=60)


def test_open_fails_clearly(pg_url: str) -> None:
    async def body() -> None:
        with psycopg.connect(pg_url, autocommit=True) as db:
            store = PostgresStore(pg_url)
            await store.open()
            await store.close()
            db.execute("UPDATE crdtdoc_meta SET value = '99' WHERE key = 'schema'")
        with pytest.raises(StorageError, match="schema 99"):
            await PostgresStore(pg_url).open()
        with pytest.raises(StorageError, match="cannot open the PostgreSQL store"):
            await PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none").open()

    run(body(), timeout=60)


def test_urls_in_messages_hide_the_password() -> None:
    assert redacted("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redacted("postgresql://bob@db/x") == "postgresql://bob@db/x"
    assert redacted("crdtdoc.db") == "crdtdoc.db"


def _replay(updates: list[bytes]) -> Replica:
    replica = Replica("reader")
    for update in updates:
        if update:
            replica.apply_update(update)
    return replica

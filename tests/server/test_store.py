from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from crdtdoc.errors import StorageError
from crdtdoc.server.commit import Append, Compact
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from tests.support.aio import run


def test_log_and_snapshot_load_in_order(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    store.commit([Append("r", 1, b"a"), Append("r", 2, b"b"), Append("other", 1, b"x")])
    assert store.load("r").updates == [b"a", b"b"]
    store.commit([Append("r", 3, b"c"), Compact("r", 2, b"snap"), Append("r", 4, b"d")])
    loaded = store.load("r")
    assert (loaded.snapshot, loaded.snapshot_seq, loaded.updates, loaded.last_seq) == (
        b"snap",
        2,
        [b"c", b"d"],
        4,
    )
    assert store.rooms() == ["other", "r"]
    assert store.load("missing").snapshot is None
    store.close()


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    store.commit([Append("r", 1, b"a")])
    with pytest.raises(StorageError, match="cannot write"):
        store.commit([Compact("r", 1, b"snap"), Append("r", 2, b"b"), Append("r", 2, b"dup")])
    loaded = store.load("r")
    assert loaded.snapshot is None and loaded.updates == [b"a"]  # compaction rolled back too
    store.close()


def test_refuses_a_file_that_is_not_a_hub_database(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open the hub database"):
        SqliteStore(str(path))
    other = tmp_path / "future.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '99')")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="schema 99"):
        SqliteStore(str(other))


def test_committer_groups_writes_and_reports_what_each_batch_covered(tmp_path: Path) -> None:
    async def body() -> None:
        committer = SqliteCommitter(SqliteStore(str(tmp_path / "s.db")))
        committer.start()
        durable: list[int] = []
        taken = 0

        def on_taken() -> object:
            nonlocal taken
            taken += 1
            seq = n
            return lambda: durable.append(seq)

        for n in range(1, 201):
            committer.append("r", n, b"u%d" % n, on_taken)  # type: ignore[arg-type]
            if n % 50 == 0:
                await asyncio.sleep(0)
        await committer.drained()
        assert durable[-1] == 200 and durable == sorted(durable)
        assert committer.commits == taken < 200  # grouped: fewer transactions than writes
        loaded = await committer.run_blocking(lambda: committer.store.load("r"))
        assert len(loaded.updates) == 200
        await committer.close()

    run(body())

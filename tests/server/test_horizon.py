"""`crdtdoc.server.horizon`: a hub with a history horizon lets the past go once it is older than
the horizon. Marks are noted at compactions, at most 16 per horizon; the newest mark older than
the horizon has its deletions collected, once; every version from that mark on still reads. On a
real hub: the deleted secret is gone from the store, from the hub's memory and from a new
reader's copy, through a restart, while what was deleted since stays readable."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

import crdtdoc
from crdtdoc import HistoryUnavailable, Replica
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.provenance import DELTA, FULL, StoredRecord, records_from_rows
from crdtdoc.server.commit import Append, Compact, HorizonWrite
from crdtdoc.server.horizon import HistoryHorizon
from crdtdoc.server.store import SqliteStore
from crdtdoc.updates import encode_state_vector
from tests.support.aio import run
from tests.support.hubs import running_cluster, running_hub
from tests.support.services import RedisServer

FAST = Backoff(initial=0.05, maximum=0.2)


def test_the_newest_mark_past_the_horizon_is_collected_once() -> None:
    replica = Replica("hub", history=True)
    doc = replica.document("d")
    doc.insert(0, "keep. secret!")
    horizon = HistoryHorizon(100.0)
    first = horizon.at_compaction(replica, 0.0)
    assert first.mark is not None and first.mark[0] == 0.0
    assert horizon.at_compaction(replica, 5.0).mark is None  # 5 < 100/16: not due yet
    before = replica.version()
    doc.delete(6, 7)
    noted = horizon.at_compaction(replica, 10.0)
    assert noted.mark is not None and (noted.marks_from, noted.records_from) == (0.0, -90.0)
    doc.insert(0, ">")
    doc.delete(0, 1)  # deleted after the mark: stays readable
    recent = replica.version()

    horizon.at_compaction(replica, 105.0)  # the mark at 0 had deleted nothing
    assert replica.at(before).document("d").read() == "keep. secret!"
    write = horizon.at_compaction(replica, 111.0)  # the mark at 10 is past: collected
    assert write.marks_from == 10.0 and write.records_from == 11.0
    assert b"secret" not in replica.encode_update()
    with pytest.raises(HistoryUnavailable):
        replica.at(before).document("d").read()
    assert replica.at(horizon.marks[0][1]).document("d").read() == "keep. "
    assert replica.at(recent).document("d").read() == "keep. "
    assert replica.document("d").read() == "keep. "
    steps = replica.history("d", limit=None)
    assert [e.collected for e in steps] == [True, True, False, False]
    assert "was collected: it reads short here" in steps[0].describe()
    generation = replica.generation
    horizon.at_compaction(replica, 112.0)  # the same mark: not collected again
    assert replica.generation == generation


def test_a_damaged_mark_is_skipped() -> None:
    horizon = HistoryHorizon(10.0)
    horizon.restore("r", [(1.0, b"\xff\xff"), (2.0, Replica("a").version().to_bytes())])
    assert [at for at, _ in horizon.marks] == [2.0]


SETTINGS = {"history_horizon": 1.0, "compact_log_updates": 2}


async def forget_a_secret(url: str) -> tuple[str, str]:
    """alice pastes a secret and deletes it, then writes on until the horizon passes it, and
    deletes a line within the horizon; returns the versions before the secret's deletion and
    after the line's."""
    async with crdtdoc.connect(url, agent="alice", backoff=FAST, history=True) as alice:
        design = alice.document("design")
        design.write("Keep this. The key is hunter2!\n")
        before = alice.version().token()
        design.replace(" The key is hunter2!", "")
        await alice.flush(timeout=10)
        for round_ in range(3):  # marks, then the horizon passes them
            await asyncio.sleep(0.6)
            for n in range(3):
                alice.document("notes").append(f"{round_}.{n} ")
                await alice.flush(timeout=10)
        design.append("Later.\n")
        design.replace("Later.\n", "")  # deleted within the horizon: still readable
        recent = alice.version().token()
        await alice.flush(timeout=10)
    return before, recent


async def read_back(url: str, before: str, recent: str) -> None:
    async with crdtdoc.connect(url, agent="bob", backoff=FAST, history=True) as bob:
        with pytest.raises(HistoryUnavailable):
            bob.at(before).document("design").read()
        assert bob.at(recent).document("design").read() == "Keep this.\n"
        assert b"hunter2" not in bob.encode_update()


def test_a_hub_lets_the_past_go_after_its_horizon(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> tuple[str, str]:
        async with running_hub(db, **SETTINGS) as hub:
            versions = await forget_a_secret(hub.url + "/room")
            assert b"hunter2" not in hub.rooms["room"].replica.encode_update()
            return versions

    before, recent = run(body())
    with sqlite3.connect(db) as stored:
        (snapshot,) = stored.execute("SELECT data FROM snapshots").fetchone()
        assert b"hunter2" not in snapshot
        assert 1 <= stored.execute("SELECT count(*) FROM history_marks").fetchone()[0] <= 17

    async def reread() -> None:
        async with running_hub(db, **SETTINGS) as hub:  # restarted from the store
            await read_back(hub.url + "/room", before, recent)

    run(reread())


def test_hubs_sharing_postgresql_let_the_past_go_too(pg_url: str, redis: RedisServer) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2, **SETTINGS) as (one, two):
            before, recent = await forget_a_secret(one.url + "/room")
            await read_back(two.url + "/room", before, recent)
        async with await psycopg.AsyncConnection.connect(pg_url) as db:
            cur = await db.execute("SELECT data FROM crdtdoc_snapshots")
            (snapshot,) = await cur.fetchone() or (b"",)
            assert snapshot and b"hunter2" not in bytes(snapshot)

    run(body())


def test_pruned_provenance_keeps_each_chain_readable(tmp_path: Path) -> None:
    """Rows older than the horizon go, but each hub's chain keeps its newest whole row older
    than that: the rows after it only hold what changed, so the chain still reads whole. A chain
    with nothing within the horizon (its hub process stopped) goes whole."""
    store = SqliteStore(str(tmp_path / "hub.db"))

    def row(hub: str, n: int, kind: int, at: float) -> StoredRecord:
        seen = encode_state_vector({1: n})
        return StoredRecord(hub, n, 2, n, n + 1, seen, kind, at)

    rows = [
        row("a", 1, FULL, 1.0),
        row("a", 2, DELTA, 2.0),
        row("a", 3, FULL, 3.0),
        row("a", 4, DELTA, 4.0),  # older than the horizon, after the last whole row: kept
        row("a", 5, DELTA, 9.0),
        row("b", 1, FULL, 8.0),  # a chain wholly within the horizon
        row("b", 2, DELTA, 9.0),
        row("c", 1, FULL, 1.0),  # a chain that ended before the horizon: all of it goes
        row("c", 2, DELTA, 2.0),
    ]
    store.commit([Append("room", 1, b"\x00\x00", tuple(rows))])
    horizon = HorizonWrite(None, 0.0, 5.0)
    store.commit([Compact("room", 1, b"\x00\x00", horizon)])
    kept, _ = store.provenance("room", None, 100, 1 << 20)
    assert [(r.hub, r.n) for r in kept] == [("a", 3), ("a", 4), ("a", 5), ("b", 1), ("b", 2)]
    assert all(r.seen is not None for r in records_from_rows(kept))
    store.close()


def test_a_revert_past_what_was_collected_keeps_the_live_value_and_says_why() -> None:
    """Attack review: reverting an overwrite whose old value was collected wrote None over the
    live value; it is now kept and listed."""
    alice = Replica("alice", history=True)
    cfg = alice.map("cfg")
    cfg.set("retries", 3)
    after_first = alice.version()
    cfg.set("retries", 5)  # overwrites 3: the old value is deleted
    horizon = HistoryHorizon(100.0)
    horizon.at_compaction(alice, 0.0)
    horizon.at_compaction(alice, 101.0)  # the mark at 0 passed: 3 is collected
    plan = alice.plan_revert("alice", since=after_first)
    assert any("no longer held" in k for k in plan.kept), plan.kept
    alice.revert("alice", since=after_first)
    assert alice.map("cfg").get("retries") == 5

"""`crdtdoc.server.provenance` on a real hub: what it records of each writer, and `built_on`
with that record. Bob writes a fix; dave edits inside it (wrote on it); alice, connected, writes
elsewhere after it reached her (had been sent it); carol, offline since before the fix, writes
and reconnects after it (her offline work had not seen it). The record survives compaction and a
restart of the hub, and reads the same through several hubs on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from websockets.asyncio.server import ServerConnection

import crdtdoc
from crdtdoc.history import HAD_BEEN_SENT, WROTE_ON
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.extension import Reply
from crdtdoc.provenance import (
    ANNOUNCED,
    ANNOUNCED_FULL,
    DELTA,
    FULL,
    MAX_LAGGING,
    StoredRecord,
    records_from_rows,
)
from crdtdoc.server.cluster import FROM_LOG
from crdtdoc.server.commit import Append
from crdtdoc.server.config import HubConfig
from crdtdoc.server.peer import Peer
from crdtdoc.server.provenance import MAX_OFFLINE_ROWS, ProvenanceRecorder, read_rows
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from crdtdoc.updates import encode_state_vector
from tests.support.aio import run
from tests.support.hubs import free_port, running_cluster, running_hub
from tests.support.services import RedisServer

FAST = Backoff(initial=0.05, maximum=0.2)


def link(url: str, agent: str, **options: object) -> crdtdoc.ConnectedReplica:
    return crdtdoc.connect(url, agent=agent, backoff=FAST, history=True, **options)  # type: ignore[arg-type]


async def story(url: str, tmp_path: Path, second_url: str | None = None) -> str:
    """Plays the story in the module docstring on the room at `url` (dave and the reader on
    `second_url` when given); returns the version token from before bob's fix."""
    carol_state = str(tmp_path / "carol.state")
    async with link(url, "alice") as alice:
        alice.document("design").write("Intro.\nRetry three times.\n")
        await alice.flush(timeout=10)
        async with link(url, "carol", state_file=carol_state) as carol:
            await carol.wait_for(alice.version(), timeout=10)
        before = alice.version().token()
        async with link(url, "bob") as bob:
            await bob.wait_for(alice.version(), timeout=10)
            bob.document("design").replace("Retry three times.", "Retry forever.")
            await bob.flush(timeout=10)
        await alice.wait_for(bob.version(), timeout=10)
        # carol writes while offline (no hub listens there), before she sees the fix
        offline = f"ws://127.0.0.1:{free_port()}/room"
        async with link(offline, "carol", state_file=carol_state, wait_synced=False) as carol:
            carol.document("notes").write("Carol's offline notes.\n")
        async with link(second_url or url, "dave") as dave:
            await dave.wait_for(alice.version(), timeout=10)
            dave.document("design").replace("forever", "forever (with backoff)")
            await dave.flush(timeout=10)
        alice.document("design").replace("Intro.", "Intro, revised.")
        await alice.flush(timeout=10)
        async with link(url, "carol", state_file=carol_state) as carol:
            await carol.flush(timeout=10)
        return before


def test_the_record_tells_who_had_been_sent_a_change(tmp_path: Path) -> None:
    async def body() -> str:
        async with running_hub(tmp_path / "hub.db") as hub:
            return await story(hub.url + "/room", tmp_path)

    before = run(body())
    with_record, without = _read_on_new_hub(tmp_path, before)
    # erin joined later, after a restart: she had been sent the fix too (an upper bound)
    assert with_record == {"dave": WROTE_ON, "alice": HAD_BEEN_SENT, "erin": HAD_BEEN_SENT}
    assert "carol" not in with_record  # her offline notes were written without the fix
    assert without == {"dave": WROTE_ON}, without


Listed = tuple[dict[str, str], dict[str, str]]


def _read_on_new_hub(tmp_path: Path, before: str) -> Listed:
    """Reads on a hub restarted on the same database, compacting at every update."""

    async def body() -> Listed:
        async with running_hub(tmp_path / "hub.db", compact_log_updates=1) as hub:
            async with link(hub.url + "/room", "erin") as erin:  # her write compacts the log
                erin.document("todo").write("Check the retry policy.\n")
                await erin.flush(timeout=10)
            return await _read(hub.url + "/room", before)

    listed = run(body())
    with sqlite3.connect(tmp_path / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM updates").fetchone()[0] == 0  # compacted
        assert db.execute("SELECT count(*) FROM provenance").fetchone()[0] >= 4
    return listed


async def _read(url: str, before: str) -> Listed:
    """bob's work since `before` as a new reader lists it: with the hub's record, and without."""
    async with link(url, "reader") as reader:
        provenance = await reader.provenance()
        assert len(provenance) >= 4
        recorded = reader.built_on("bob", since=before, provenance=provenance)
        plain = reader.built_on("bob", since=before)
    return (
        {str(e.agent): str(e.basis) for e in recorded},
        {str(e.agent): str(e.basis) for e in plain},
    )


def test_a_run_of_keystrokes_is_one_row_and_others_writing_starts_a_new_one() -> None:
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    typist, other = object(), object()

    def commit(writer: object, client: int, start: int, end: int) -> list[StoredRecord]:
        state[client] = end
        return rec.committed(writer, {client: (start, end)}, state)

    state: dict[int, int] = {}
    first = commit(typist, 1, 0, 1)
    assert [(r.n, r.start, r.end, r.kind) for r in first] == [(1, 0, 1, FULL)]
    assert [(r.n, r.end) for r in commit(typist, 1, 1, 2)] == [(1, 2)]  # extended
    assert rec.committed(other, {}, state) == []  # deletions only: nothing seen changes
    assert [(r.n, r.end) for r in commit(typist, 1, 2, 5)] == [(1, 5)]
    (second,) = commit(other, 2, 0, 3)
    assert (second.n, second.kind) == (2, DELTA)
    assert second.seen == encode_state_vector({1: 5, 2: 3})
    (row,) = commit(typist, 1, 5, 6)  # the other's write came in between: a new row
    assert (row.n, row.start, row.kind) == (3, 5, DELTA)
    assert row.seen == encode_state_vector({1: 6})  # only what advanced since row 2
    records = records_from_rows([*commit(other, 2, 3, 4), row, second, *first])
    assert [dict(r.seen or {}) for r in records] == [
        {1: 1},
        {1: 5, 2: 3},
        {1: 6, 2: 3},
        {1: 6, 2: 4},
    ]
    assert records_from_rows([row])[0].seen is None  # its chain's start is gone: not known


def test_offline_work_is_recorded_with_what_its_link_lagged_behind_in() -> None:
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    writer = object()
    state = {1: 10, 3: 2, 7: 6}
    rows = rec.committed(writer, {7: (0, 6)}, state, offline={7: 4, 1: 2, 3: 2})
    assert [(r.start, r.end, r.kind) for r in rows] == [(0, 4, ANNOUNCED_FULL), (4, 6, DELTA)]
    (record, _) = records_from_rows(rows)
    assert record.announced and record.seen == {1: 2, 3: 2, 7: 6}  # it lagged behind in 1
    assert rows[0].seen == encode_state_vector(state) + encode_state_vector({1: 2})


def test_a_link_lagging_behind_in_many_clients_is_recorded_as_connected() -> None:
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    state = {c: 1 for c in range(1, MAX_LAGGING + 3)}
    (row,) = rec.committed(object(), {1: (0, 1)}, state, offline={1: 1})
    assert row.kind == FULL  # the room's state: an upper bound, a few bytes per client at most


def test_a_local_commit_makes_the_next_row_whole() -> None:
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    w = object()
    state = {1: 1}
    assert rec.committed(w, {1: (0, 1)}, state)[0].kind == FULL
    state = {1: 1, 9: 3}
    assert rec.committed(None, None, state) == []  # the hub's own edit
    state[2] = 1
    assert rec.committed(object(), {2: (0, 1)}, state)[0].kind == FULL


def test_the_record_reads_the_same_through_several_hubs(
    tmp_path: Path, pg_url: str, redis: RedisServer
) -> None:
    """Each hub records its own links' writes in the shared database: alice, bob and carol on
    one hub, dave and the reader on another, read the same answer."""

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2) as (one, two):
            before = await story(one.url + "/room", tmp_path, second_url=two.url + "/room")
            with_record, without = await _read(two.url + "/room", before)
            assert with_record == {"dave": WROTE_ON, "alice": HAD_BEEN_SENT}, with_record
            assert without == {"dave": WROTE_ON}, without

    run(body())


def test_answers_page_on_and_stay_bounded(tmp_path: Path) -> None:
    committer = SqliteCommitter(SqliteStore(str(tmp_path / "hub.db")))
    big = encode_state_vector({c: 1 for c in range(40_000)})  # a whole state vector, ~200 KB
    records = [
        StoredRecord("0f", n, 1, n, n + 1, big if n in (3, 4) else b"\x00", FULL, 0.0)
        for n in range(1, 1502)
    ]
    committer.store.commit([Append("room", 1, b"\x00\x00", tuple(records))])
    stored = SimpleNamespace(fully_durable=True)

    charged: list[int] = []

    async def page(args: object) -> Reply:
        return await read_rows(committer, "room", stored, 7, args, charged.append)  # type: ignore[arg-type]

    async def body() -> None:
        first = await page({"limit": 1000})
        assert first.error is None and first.result["more"] is True
        assert [r[1] for r in first.result["rows"]] == [1, 2, 3]  # stops before the second big
        assert charged and charged[-1] > len(big)  # what it sends, charged to the asker
        second = await page({"after": ["0f", 3], "limit": 1000})
        assert len(second.result["rows"]) == 1000 and second.result["more"] is True
        last = await page({"after": ["0f", 1003]})
        assert len(last.result["rows"]) == 498 and last.result["more"] is False
        assert (await page({"after": ["0f", 3000]})).result == {"rows": [], "more": False}
        refused = await page({"limit": 5000})
        assert refused.error == "invalid" and "limit" in refused.message
        other = await read_rows(committer, "other", stored, 8, {})  # type: ignore[arg-type]
        assert other.result["rows"] == []
        await committer.close()

    run(body())


def test_what_came_from_another_hub_makes_no_row_and_takes_no_whole_row() -> None:
    """Another hub records what it stored (a guarded commit through a cluster among it); this
    hub's chain must not spend its whole row on it (attack review: the row was dropped, and up
    to 1,000 rows after it read as unknown)."""
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    applying = (Peer(cast(ServerConnection, None), HubConfig(), "127.0.0.1:1"), b"")
    stored = SimpleNamespace(commit_origin=FROM_LOG, commit_fresh={5: (0, 3)})
    stored.applied = lambda: ({5: 3}, None)
    assert rec.of_commit(stored, applying) == ()  # type: ignore[arg-type]
    (row,) = rec.committed(object(), {6: (0, 1)}, {5: 3, 6: 1})
    assert row.kind == FULL


def test_offline_work_extends_its_row_and_a_link_makes_few_such_rows() -> None:
    """Attack review: each offline write made a new row of up to a few KB; they now extend one
    row while nobody else writes, and a link makes at most MAX_OFFLINE_ROWS of them."""
    rec = ProvenanceRecorder(lambda: 1.0, hub="0f")
    link, other = object(), object()
    state = {1: 0, 2: 1}
    offline = {1: 10**6, 2: 0}  # it lagged behind in client 2
    rows = []
    for clock in range(3 * MAX_OFFLINE_ROWS):
        state[1] = clock + 1
        rows += rec.committed(link, {1: (clock, clock + 1)}, state, offline)
        state[2] += 1
        rec.committed(other, {2: (state[2] - 1, state[2])}, state)  # another writes between
    kinds = [r.kind for r in rows]
    offline_rows = {r.n for r in rows if r.kind in (ANNOUNCED, ANNOUNCED_FULL)}
    assert len(offline_rows) == MAX_OFFLINE_ROWS and DELTA in kinds
    again = ProvenanceRecorder(lambda: 1.0, hub="0f")
    state = {1: 0, 2: 1}
    grown = [again.committed(link, {1: (c, c + 1)}, {**state, 1: c + 1}, offline) for c in range(5)]
    assert {r.n for rs in grown for r in rs} == {1} and grown[-1][0].end == 5  # one row, extended

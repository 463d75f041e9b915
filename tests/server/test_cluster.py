"""Several hubs on one PostgreSQL database and Redis (in-process hubs, real sockets, real services):
convergence, late joiners, lost and reordered Redis messages, a Redis restart, compaction racing
across hubs, guarded and fenced commits decided across hubs."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect

import crdtdoc
from crdtdoc.idset import IdSet
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, encode_message
from crdtdoc.server.cluster import INLINE_BYTES, SeqTracker, decode_entry, encode_entry
from crdtdoc.server.hub import Hub
from crdtdoc.updates import deletes_only, parse_update
from tests.support.aio import run
from tests.support.builders import content, random_edit
from tests.support.hubs import running_cluster
from tests.support.services import RedisServer
from tests.support.stored import stored_shared_replica

FAST = Backoff(initial=0.05, maximum=0.3)


# -- the sans-I/O parts ------------------------------------------------------------------------


@given(st.lists(st.integers(1, 40), max_size=120), st.randoms(use_true_random=False))
def test_seq_tracker_knows_exactly_the_contiguous_prefix(
    arrivals: list[int], rng: random.Random
) -> None:
    everything = list(range(1, 41)) + arrivals  # every entry at least once, some twice
    rng.shuffle(everything)
    tracker, seen = SeqTracker(), set()
    for seq in everything:
        assert tracker.add(seq) == (seq not in seen)
        seen.add(seq)
        prefix = 0
        while prefix + 1 in seen:
            prefix += 1
        assert tracker.applied == prefix
        assert tracker.gap == (len(seen) > prefix)
    assert (tracker.applied, tracker.gap) == (40, False)


def test_seq_tracker_skips_what_a_snapshot_covers() -> None:
    tracker = SeqTracker(3)
    for seq in (6, 9, 12):
        tracker.add(seq)
    tracker.skip_to(8)
    assert (tracker.applied, tracker.ahead) == (9, {12})
    assert not tracker.add(5)


def test_entries_round_trip_and_large_ones_are_only_announced() -> None:
    assert decode_entry(encode_entry(7, b"abc")) == (7, b"abc")
    assert decode_entry(encode_entry(2**40, b"x" * (INLINE_BYTES + 1))) == (2**40, None)
    for junk in (b"", b"\x00short", b"\x07" + bytes(8)):
        assert decode_entry(junk) is None


# -- helpers -----------------------------------------------------------------------------------


async def spread_agents(
    hubs: Sequence[Hub], room: str, per_hub: int
) -> list[crdtdoc.ConnectedReplica]:
    """`per_hub` agents on each hub; each lists the other hubs as fallbacks."""
    replicas = []
    for h in range(len(hubs)):
        urls = [x.url + "/" + room for x in (*hubs[h:], *hubs[:h])]
        for i in range(per_hub):
            replicas.append(crdtdoc.connect(urls, agent=f"h{h}a{i}", backoff=FAST))
    await asyncio.gather(*(r.start() for r in replicas))
    return replicas


async def converged(
    replicas: Sequence[crdtdoc.Replica],
    timeout: float = 30.0,
    view: Callable[[crdtdoc.Replica], object] = content,
) -> None:
    """Waits until every replica reads the same; fails naming the difference otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        views = [view(r) for r in replicas]
        if all(v == views[0] for v in views):
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no convergence in {timeout} s: {views}")
        await asyncio.sleep(0.05)


async def edit_concurrently(
    replicas: Sequence[crdtdoc.ConnectedReplica], seed: int, steps: int, pause: float = 0.002
) -> None:
    async def agent(i: int, r: crdtdoc.ConnectedReplica) -> None:
        rng = random.Random(seed * 1000 + i)
        for _ in range(steps):
            random_edit(r, rng)
            await asyncio.sleep(rng.random() * pause)

    await asyncio.gather(*(agent(i, r) for i, r in enumerate(replicas)))


def seed_for(name: str) -> int:
    seed = int(os.environ.get("CRDTDOC_SEED", random.randrange(2**31)))
    print(f"{name}: CRDTDOC_SEED={seed}")
    return seed


def assert_stored_once(pg_url: str) -> None:
    """No hub stored an update it received from another: the ids of the stored structs never
    overlap (two agents deleting the same text concurrently may store equal delete sets)."""
    import psycopg

    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT data FROM crdtdoc_updates").fetchall()
    seen: dict[int, list[tuple[int, int]]] = {}
    for (data,) in rows:
        for client, structs in parse_update(bytes(data)).structs.items():
            for start, end in seen.get(client, []):
                assert structs.end <= start or end <= structs.start, "stored twice"
            seen.setdefault(client, []).append((structs.start, structs.end))
    assert len(rows) > 40


# -- convergence -------------------------------------------------------------------------------


def test_agents_on_three_hubs_converge_and_late_joiners_get_everything(
    pg_url: str, redis: RedisServer
) -> None:
    seed = seed_for("three hubs")

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3) as hubs:
            agents = await spread_agents(hubs, "design", 2)
            await edit_concurrently(agents, seed, steps=40)
            await asyncio.gather(*(a.flush() for a in agents))
            await converged(agents)
            for hub in hubs:  # a late joiner on any hub
                async with crdtdoc.connect(hub.url + "/design", agent="late") as late:
                    await converged([late, agents[0]])
            assert content(stored_shared_replica(pg_url, "design")) == content(agents[0])
            assert_stored_once(pg_url)
            assert sum(h.cluster.received for h in hubs if h.cluster) > 0  # Redis did its part
            for a in agents:
                await a.close()

    run(body(), timeout=120)


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis-drops-half", "no-redis"])
def test_hubs_converge_when_redis_messages_are_lost(
    pg_url: str, redis: RedisServer, with_redis: bool
) -> None:
    """Half of all Redis messages are dropped on arrival (or there is no Redis at all): gap
    detection and the periodic comparison with the log still bring every hub up to date."""
    seed = seed_for("lossy fan-out")

    async def body() -> None:
        async with running_cluster(
            pg_url,
            redis.url if with_redis else None,
            3,
            fanout_drop_rate=0.5 if with_redis else 0.0,
            anti_entropy_seconds=0.3,
        ) as hubs:
            agents = await spread_agents(hubs, "lossy", 2)
            await edit_concurrently(agents, seed, steps=30)
            await asyncio.gather(*(a.flush() for a in agents))
            await converged(agents)
            clusters = [h.cluster for h in hubs if h.cluster]
            assert sum(c.caught_up for c in clusters) > 0  # read from the log, not Redis
            if with_redis:
                assert sum(c.dropped for c in clusters) > 0
            for a in agents:
                await a.close()

    run(body(), timeout=120)


def test_hubs_recover_when_redis_restarts_mid_load(pg_url: str, redis: RedisServer) -> None:
    """Redis goes away mid-load; what is published meanwhile is lost for good. The hubs notice
    the reconnect and read what they missed from the log, without waiting for anti-entropy."""
    seed = seed_for("redis restart")

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3, anti_entropy_seconds=60.0) as hubs:
            agents = await spread_agents(hubs, "restart", 2)
            writing = asyncio.create_task(edit_concurrently(agents, seed, steps=40, pause=0.02))
            await asyncio.sleep(0.2)
            redis.stop()
            await writing
            await edit_concurrently(agents, seed + 1, steps=10)  # only while Redis is down
            await asyncio.gather(*(a.flush() for a in agents))
            redis.start()
            await converged(agents, timeout=10.0)
            assert all(h.cluster and h.cluster.reconnects > 0 for h in hubs)
            for a in agents:
                await a.close()

    run(body(), timeout=120)


def test_compaction_across_hubs_loses_nothing(pg_url: str, redis: RedisServer) -> None:
    """Every hub compacts every 5 log entries while three write: compactions race, one wins
    each time, and a hub that lags behind a compaction catches up from the snapshot."""
    seed = seed_for("compaction")

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3, compact_log_updates=5) as hubs:
            agents = await spread_agents(hubs, "compacted", 1)
            await edit_concurrently(agents, seed, steps=60)
            await asyncio.gather(*(a.flush() for a in agents))
            await converged(agents)
            import psycopg

            for _ in range(50):  # compactions run in the background (and retry after a gap)
                with psycopg.connect(pg_url) as db:
                    row = db.execute("SELECT seq FROM crdtdoc_snapshots").fetchone()
                    left = db.execute("SELECT count(*) FROM crdtdoc_updates").fetchone()
                if row is not None and row[0] > 5 and left is not None and left[0] < 60:
                    break
                await asyncio.sleep(0.1)
            assert row is not None and row[0] > 5 and left is not None and left[0] < 60
            assert content(stored_shared_replica(pg_url, "compacted")) == content(agents[0])
            # A fresh hub started now loads the snapshot plus the tail.
            async with (
                running_cluster(pg_url, redis.url, 1) as (late_hub,),
                crdtdoc.connect(late_hub.url + "/compacted", agent="late") as late,
            ):
                await converged([late, agents[0]])
            for a in agents:
                await a.close()

    run(body(), timeout=120)


def test_a_deletion_of_ids_that_never_come_does_not_stop_compaction(
    pg_url: str, redis: RedisServer
) -> None:
    """Compaction waits for no struct in the causal buffer; a deletion waiting for ids goes into
    the snapshot instead (it once stopped shared-log compaction for good: 1 to 401 rows)."""
    seed = seed_for("compaction with a waiting deletion")

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 1, compact_log_updates=5) as hubs:
            nowhere = IdSet()
            nowhere.add(987_654_321, 0, 10)  # a client that never writes
            # The sender stays connected (what it has waiting is dropped when it leaves).
            async with ws_connect(hubs[0].url + "/stalled", max_queue=None) as ws:
                await ws.send(encode_message(SyncStep1(b"\x00")))
                await ws.send(encode_message(SyncUpdate(deletes_only(nowhere))))
                await asyncio.sleep(0.2)
                agents = await spread_agents(hubs, "stalled", 2)
                await edit_concurrently(agents, seed, steps=40)
                await asyncio.gather(*(a.flush() for a in agents))
                await converged(agents)
                import psycopg

                rows = appended = 0
                for _ in range(50):  # compactions run in the background
                    with psycopg.connect(pg_url) as db:
                        left = db.execute("SELECT count(*) FROM crdtdoc_updates").fetchone()
                        last = db.execute("SELECT max(last_seq) FROM crdtdoc_rooms").fetchone()
                    rows, appended = (left or (0,))[0], (last or (0,))[0]
                    if rows <= appended // 3:
                        break
                    await asyncio.sleep(0.1)
            # Stalled, the log keeps every row (the test once found 103 of 103).
            assert appended > 30 and rows <= appended // 3, f"seed {seed}: {rows} of {appended}"
            stored = stored_shared_replica(pg_url, "stalled")
            assert content(stored) == content(agents[0])
            assert stored.pending().deletions == nowhere  # in the snapshot, not lost
            for a in agents:
                await a.close()

    run(body(), timeout=120)


# -- decisions across hubs ---------------------------------------------------------------------


def test_guarded_commits_from_one_read_on_two_hubs_exactly_one_wins(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2) as hubs:
            a, b = await spread_agents(hubs, "guarded", 1)
            a.spec("api").set("getUser", "v1")
            await a.flush()

            async def write(r: crdtdoc.ConnectedReplica, value: str) -> str:
                try:
                    async with r.commit(expect=read, on=["api"]):
                        r.spec("api").set("getUser", value)
                except crdtdoc.Conflict:
                    return "conflict"
                return "won"

            for round_ in range(5):
                await b.wait_for(a.version(), timeout=10)
                await a.wait_for(b.version(), timeout=10)
                read = a.version()
                outcomes = await asyncio.gather(write(a, f"a{round_}"), write(b, f"b{round_}"))
                assert sorted(outcomes) == ["conflict", "won"], outcomes
            await a.flush()
            await b.flush()
            await converged([a, b])
            assert a.spec("api").conflicts() == {}  # every write saw the one before it
            await a.close()
            await b.close()

    run(body(), timeout=90)


def test_a_write_fenced_with_an_old_token_is_refused_by_another_hub(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2, lease_poll_seconds=0.05) as hubs:
            a, b = await spread_agents(hubs, "fenced", 1)
            old = await a.acquire("deploy", ttl=0.3)
            old._renewer.cancel()  # a paused holder: it stops renewing
            await asyncio.sleep(0.5)
            new = await b.acquire("deploy", ttl=5, wait=5)
            assert new.token > old.token
            with pytest.raises(crdtdoc.FencedOut):
                async with a.commit(fence=old):
                    a.document("log").append("zombie write\n")
            async with b.commit(fence=new):
                b.document("log").append("holder write\n")
            await b.flush()
            await a.wait_for(b.version(), timeout=10)
            assert a.document("log").read() == "holder write\n"
            await new.release()
            await a.close()
            await b.close()

    run(body(), timeout=60)


# -- presence across hubs ----------------------------------------------------------------------


async def peers_become(
    replica: crdtdoc.ConnectedReplica, agents: list[str], timeout: float = 10.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while sorted(p.agent or "" for p in replica.peers()) != agents:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{replica.agent} sees {replica.peers()}, expected {agents}")
        await asyncio.sleep(0.05)


def test_a_hub_whose_presence_subscription_comes_late_tells_what_it_has() -> None:
    """Presence is relayed only while both hubs are subscribed, and a hub asks the others once
    its subscription is up. When a hub's own subscription comes up after another hub asked (it
    missed the question) and after its client's presence arrived (published to nobody), it
    must tell what it has as it subscribes, or the others see nobody until the next renewal."""
    from crdtdoc.server.cluster import PRESENCE_CHANNEL, Cluster

    class Late:
        name = "team"

        def local_presence(self) -> bytes | None:
            return b"alice's awareness"

    rooms = {"team": Late()}
    cluster = Cluster(None, None, lambda: rooms)  # type: ignore[arg-type]
    sent: list[tuple[bytes, bytes]] = []
    cluster._publish = lambda channel, payload: sent.append((channel, payload))  # type: ignore[method-assign]
    cluster._receive({"type": "subscribe", "channel": PRESENCE_CHANNEL + b"team", "data": 1})
    kinds = {payload[0] for channel, payload in sent if channel == PRESENCE_CHANNEL + b"team"}
    assert kinds == {0, 1}  # its entries (0) and the question to the others (1)
    told = [payload for _, payload in sent if payload[0] == 0]
    assert told == [bytes([0]) + cluster.hub_id + b"alice's awareness"]


def test_presence_is_relayed_between_hubs_and_expires_with_its_hub(
    pg_url: str, redis: RedisServer
) -> None:
    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 3) as hubs:
            a = crdtdoc.connect(hubs[0].url + "/team", agent="alice", backoff=FAST)
            b = crdtdoc.connect(hubs[1].url + "/team", agent="bob", backoff=FAST)
            await a.start()
            await b.start()
            await peers_become(b, ["alice"])
            a.set_presence(status="reviewing", task="t-9")
            for _ in range(100):
                if [(p.status, p.task) for p in b.peers()] == [("reviewing", "t-9")]:
                    break
                await asyncio.sleep(0.05)
            assert [(p.status, p.task) for p in b.peers()] == [("reviewing", "t-9")]
            # A hub that starts serving the room later asks the others who is there.
            async with crdtdoc.connect(hubs[2].url + "/team", agent="carol") as c:
                await peers_become(c, ["alice", "bob"])
            await a.close()  # leaving is relayed too
            await peers_become(b, [])
            # Presence from a hub that stops renewing (it died) expires after 30 s.
            a = crdtdoc.connect(hubs[0].url + "/team", agent="alice", backoff=FAST)
            await a.start()
            await peers_become(b, ["alice"])
            room = hubs[1].rooms["team"]
            room.expire_remote_presence(time.monotonic() + 10, 30.0)
            assert [p.agent for p in b.peers()] == ["alice"]  # not yet
            room.expire_remote_presence(time.monotonic() + 31, 30.0)
            await peers_become(b, [])
            await a.close()
            await b.close()

    run(body(), timeout=90)


def test_client_ids_registered_on_one_hub_cannot_be_taken_on_another(
    pg_url: str, redis: RedisServer
) -> None:
    from crdtdoc.protocol.messages import SyncUpdate, encode_message
    from tests.server.test_security import SECRET, closed_with, raw, token
    from tests.test_updates import _string_item, _update

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2, secret=SECRET) as hubs:
            # bob first: hub 1 has the room loaded before alice registers through hub 0.
            bob = crdtdoc.connect(hubs[1].url + "/p", agent="bob", token=token("bob"))
            await bob.start()
            alice = crdtdoc.connect(
                [hubs[0].url + "/p", hubs[1].url + "/p"],
                agent="alice",
                token=token("alice"),
                backoff=FAST,
            )
            await alice.start()
            alice.document("d").insert(0, "alice 1;")
            await alice.flush()
            await bob.wait_for(alice.version(), timeout=10)
            victim, clock = alice.client_id, alice.version().clocks[alice.client_id]
            ws, _ = await raw(hubs[1].url + "/p", "mallory")  # on the other hub
            await ws.send(
                encode_message(SyncUpdate(_update(victim, clock, _string_item(b"forged"))))
            )
            code, reason, _ = await closed_with(ws)
            assert code == 4403 and "belongs to alice" in reason
            await hubs[0].close()  # alice fails over and keeps her ids on hub 1
            alice.document("d").append("alice 2;")
            await alice.flush(timeout=20)
            assert alice.url.startswith(hubs[1].url) and alice.refused is None
            await bob.wait_for(alice.version(), timeout=10)
            assert bob.document("d").read() == "alice 1;alice 2;"
            await alice.close()
            await bob.close()

    run(body(), timeout=90)


def test_damaged_redis_messages_are_ignored_and_read_from_the_log(
    pg_url: str, redis: RedisServer
) -> None:
    import redis as redis_client

    async def body() -> None:
        async with running_cluster(pg_url, redis.url, 2, anti_entropy_seconds=60.0) as hubs:
            a, b = await spread_agents(hubs, "damaged", 1)
            a.document("text").insert(0, "before;")
            await a.flush()
            await converged([a, b])
            room = hubs[1].rooms["damaged"]
            position = room.seqs.applied
            assert not room.apply_stored(position + 1, b"\x01\x02junk")  # not taken as applied
            assert room.seqs.applied == position and not room.seqs.ahead
            publisher = redis_client.Redis.from_url(redis.url)
            for junk in (b"", b"\x07" + bytes(20), b"\x00" + (position + 1).to_bytes(8, "big")):
                publisher.publish(b"crdtdoc:room:damaged", junk)
                publisher.publish(b"crdtdoc:presence:damaged", junk)
            publisher.close()
            a.document("text").append("after;")
            await a.flush()
            await converged([a, b])  # the damaged entry was read from the log instead
            assert b.document("text").read() == "before;after;"
            await a.close()
            await b.close()

    run(body(), timeout=60)

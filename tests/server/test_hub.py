"""The hub in-process, with real websocket clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import crdtdoc
from crdtdoc import Replica
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.messages import (
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.server.config import HubConfig
from crdtdoc.server.hub import Hub
from tests.support.aio import run
from tests.support.builders import random_edit
from tests.support.hubs import running_hub
from tests.support.stored import stored_replica
from tests.test_updates import REFUSALS


async def raw_sync(url: str) -> tuple[ClientConnection, Replica]:
    """A bare y-protocols client: sends an empty state vector, applies the hub's step 2."""
    ws = await ws_connect(url, max_size=None, compression=None)
    replica = Replica("raw")
    await ws.send(encode_message(SyncStep1(replica.state_vector())))
    while True:
        message = decode_message(await ws.recv())  # type: ignore[arg-type]
        if isinstance(message, SyncStep2):
            replica.apply_update(message.update)
            return ws, replica


async def converge(replicas: list[crdtdoc.ConnectedReplica], timeout: float = 20) -> None:
    """Waits until every replica has every other replica's version."""
    for r in replicas:
        await r.flush(timeout=timeout)
    for r in replicas:
        for other in replicas:
            await r.wait_for(other.version(), timeout=timeout)


def test_many_agents_converge_and_a_late_joiner_gets_everything(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")

    async def agent(r: crdtdoc.ConnectedReplica, rng: random.Random) -> None:
        for _ in range(40):
            random_edit(r, rng)
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.01)

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/project"
            agents = [crdtdoc.connect(url, agent=f"agent{i}") for i in range(6)]
            for a in agents:
                await a.start()
            await asyncio.gather(*(agent(a, random.Random(seed + i)) for i, a in enumerate(agents)))
            await converge(agents)
            text = agents[0].document("text").read()
            assert all(a.document("text").read() == text for a in agents), f"seed {seed}"
            assert all(a.version() == agents[0].version() for a in agents), f"seed {seed}"
            async with crdtdoc.connect(url, agent="late") as late:
                await late.wait_for(agents[0].version(), timeout=10)
                assert late.document("text").read() == text
                assert late.map("map").to_dict() == agents[0].map("map").to_dict()
            for a in agents:
                await a.close()

    run(body())


def test_two_clients_joining_a_cold_room_at_the_same_instant_both_sync(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> None:
        async with running_hub(db) as hub, crdtdoc.connect(hub.url + "/cold", agent="w") as w:
            w.document("d").insert(0, "stored before the restart")
            await w.flush()
        for _ in range(5):
            async with running_hub(db) as hub:  # a fresh hub: the room is cold
                url = hub.url + "/cold"
                (ws1, r1), (ws2, r2) = await asyncio.gather(raw_sync(url), raw_sync(url))
                assert r1.document("d").read() == "stored before the restart"
                assert r2.document("d").read() == "stored before the restart"
                await ws1.close()
                await ws2.close()

    run(body())


def test_flush_returns_once_the_database_holds_the_change(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> None:
        async with running_hub(db) as hub, crdtdoc.connect(hub.url + "/r", agent="a") as a:
            for i in range(20):
                a.document("d").append(f"{i};")
                durable = await a.flush()
                assert a.version() <= durable
                # The database itself, read without the hub, already holds it.
                assert stored_replica(db, "r").document("d").read() == a.document("d").read()

    run(body())


def test_offline_edits_arrive_after_the_hub_restarts(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> None:
        hub = await _start(db, 0)
        port = hub.port
        a = crdtdoc.connect(hub.url + "/r", agent="a", backoff=Backoff(0.05, 0.2))
        await a.start()
        a.document("d").insert(0, "online ")
        await a.flush()
        await hub.close()
        a.document("d").append("offline")  # the hub is down
        assert not a.is_durable()
        hub = await _start(db, port)
        try:
            await a.flush(timeout=10)
            async with crdtdoc.connect(hub.url + "/r", agent="b") as b:
                await b.wait_for(a.version(), timeout=10)
                assert b.document("d").read() == "online offline"
            assert a.connects >= 2
        finally:
            await a.close()
            await hub.close()

    run(body())


async def _start(db: Path, port: int) -> Hub:
    hub = Hub(HubConfig(port=port, db=str(db)))
    await hub.start()
    return hub


def _bad_inputs() -> dict[str, tuple[bytes | str, int]]:
    cases: dict[str, tuple[bytes | str, int]] = {
        "garbage": (b"\xff\xfe\xfd\x00garbage", 1002),
        "empty frame": (b"", 1002),
        "unknown sync type": (b"\x00\x07\x00", 1002),
        "trailing bytes": (encode_message(SyncStep1(b"\x00")) + b"\x00", 1002),
        "text frame": ("hello", 1003),
        "oversized frame": (b"\x00\x02" + b"\x00" * 70_000, 1009),
        "bad extension": (b"\x64\x03abc", 1002),
        "bad awareness json": (b"\x01\x06\x01\x01\x01\x02{x", 1002),
    }
    for name, (update, _) in REFUSALS.items():
        if isinstance(update, bytes):
            cases[f"update: {name}"] = (encode_message(SyncUpdate(update)), 1007)
    return cases


def test_bad_input_closes_only_that_connection_and_leaves_the_room_intact(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> None:
        async with running_hub(db, max_message_bytes=64 * 1024) as hub:
            url = hub.url + "/room"
            async with crdtdoc.connect(url, agent="honest") as honest:
                honest.document("d").insert(0, "before;")
                await honest.flush()
                for name, (data, code) in _bad_inputs().items():
                    ws, _ = await raw_sync(url)
                    await ws.send(data)
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await ws.recv()
                    assert ws.close_code == code, f"{name}: closed with {ws.close_code}"
                    assert ws.close_reason, f"{name}: no reason given"
                    honest.document("d").append(f"{len(name)};")  # the room carries on
                await honest.flush()
                expected = honest.document("d").read()
                async with crdtdoc.connect(url, agent="other") as other:
                    await other.wait_for(honest.version(), timeout=10)
                    assert other.document("d").read() == expected
        async with running_hub(db) as hub:  # the stored room reloads identical
            ws, replica = await raw_sync(hub.url + "/room")
            assert replica.document("d").read() == expected
            await ws.close()

    run(body(), timeout=120)


def test_a_client_that_never_reads_costs_bounded_memory_and_others_keep_syncing(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        settings = dict(send_queue_messages=64, send_queue_bytes=256 * 1024, send_timeout=1.0)
        async with running_hub(tmp_path / "hub.db", **settings) as hub:
            url = hub.url + "/busy"
            sock = socket.create_connection(("127.0.0.1", hub.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck = await ws_connect(url, sock=sock, max_queue=1, compression=None)
            await stuck.send(encode_message(SyncStep1(b"\x00")))  # and never reads again
            async with crdtdoc.connect(url, agent="w") as w, crdtdoc.connect(url, agent="r") as r:
                room = hub.rooms["busy"]
                worst = resynced = 0
                for i in range(300):
                    w.document("d").append(f"{i:04d}" + "x" * 30_000)
                    await asyncio.sleep(0.002)
                    for peer in room.peers:
                        worst = max(worst, peer.queued[1])
                        resynced = max(resynced, peer.resyncs)
                await r.wait_for(w.version(), timeout=20)
                assert r.document("d").read() == w.document("d").read()
                # the bound: the cap, behind the first message waiting (here one edit)
                assert worst <= 256 * 1024 + 31_000, "a peer's queue grew past its bound"
                assert resynced >= 1, "the peer that never reads was never resynced"
                for _ in range(100):  # then disconnected, since it still does not read
                    if len(room.peers) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert len(room.peers) == 2, "the peer that never reads is still connected"
            stuck.transport.abort()

    run(body())


def test_idle_rooms_are_unloaded_and_reload_on_demand(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", room_idle_seconds=0.2) as hub:
            async with crdtdoc.connect(hub.url + "/idle", agent="a") as a:
                a.document("d").insert(0, "kept")
                await a.flush()
            for _ in range(100):
                if "idle" not in hub.rooms:
                    break
                await asyncio.sleep(0.05)
            assert "idle" not in hub.rooms
            ws, replica = await raw_sync(hub.url + "/idle")
            assert replica.document("d").read() == "kept"
            assert "idle" in hub.rooms
            await ws.close()

    run(body())


def test_compaction_during_concurrent_writes_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def body() -> None:
        async with running_hub(db, compact_log_updates=7) as hub:
            url = hub.url + "/c"
            agents = [crdtdoc.connect(url, agent=f"a{i}") for i in range(3)]
            for a in agents:
                await a.start()
            for step in range(60):
                for i, a in enumerate(agents):
                    a.document("d").append(f"{i}.{step} ")
                await asyncio.sleep(0)
            await converge(agents)
            expected = agents[0].document("d").read()
            assert hub.committer.commits > 0
            for a in agents:
                await a.close()
        stored = stored_replica(db, "c")
        assert stored.document("d").read() == expected
        from crdtdoc.server.store import SqliteStore

        store = SqliteStore(str(db))
        assert store.load("c").snapshot is not None
        assert len(store.load("c").updates) < 7 * 3
        store.close()

    run(body())


def test_presence_is_relayed_and_removed_when_an_agent_leaves(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/p"
            async with crdtdoc.connect(url, agent="alice") as a:
                b = crdtdoc.connect(url, agent="bob", status="reviewing")
                await b.start()
                b.set_presence(task="task-7")
                for _ in range(100):
                    if [p.task for p in a.peers()] == ["task-7"]:
                        break
                    await asyncio.sleep(0.02)
                assert [(p.agent, p.status, p.task) for p in a.peers()] == [
                    ("bob", "reviewing", "task-7")
                ]
                last_seen = a.peers()[0].last_seen
                assert last_seen is not None and abs(time.time() - last_seen) < 5
                assert [p.agent for p in b.peers()] == ["alice"]
                b.set_presence(status="idle")  # the task is kept unless given
                for _ in range(100):
                    if [p.status for p in a.peers()] == ["idle"]:
                        break
                    await asyncio.sleep(0.02)
                assert [(p.status, p.task) for p in a.peers()] == [("idle", "task-7")]
                await b.close()
                for _ in range(100):
                    if not a.peers():
                        break
                    await asyncio.sleep(0.02)
                assert a.peers() == []

    run(body())


def test_healthz_and_connection_limit(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", max_connections=2) as hub:
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await reader.read(1000)
            writer.close()
            assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"ok\n")
            first = await ws_connect(hub.url + "/a")
            second = await ws_connect(hub.url + "/a")
            with pytest.raises(InvalidStatus) as refused:
                await ws_connect(hub.url + "/a")
            assert refused.value.response.status_code == 503
            await first.close()
            await second.close()
            while hub.connections:  # the hub's handlers finish just after the close handshake
                await asyncio.sleep(0.01)
            room_less = await ws_connect(hub.url + "/")
            with pytest.raises(ConnectionClosed):
                await room_less.recv()
            assert room_less.close_code == 1008 and "no room" in (room_less.close_reason or "")

    run(body())


def test_silent_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", idle_timeout=0.5) as hub:
            ws, _ = await raw_sync(hub.url + "/quiet")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1000 and "idle for 0.5 s" in (ws.close_reason or "")
            async with crdtdoc.connect(hub.url + "/quiet", agent="a") as a:  # heartbeats
                await asyncio.sleep(0.1)
                a.document("d").insert(0, "still here")
                await a.flush()

    run(body())

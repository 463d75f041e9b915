"""A peer's send queue: bounded, overflow turns into a resync, and one message alone always fits
(a room larger than the queue can still be joined)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.asyncio.server import ServerConnection

import crdtdoc
import server.peer
from server.config import HubConfig
from server.peer import Peer
from tests.hubs import run, running_hub


def test_one_message_alone_always_fits_and_a_backlog_over_the_cap_is_dropped() -> None:
    peer = Peer(cast(ServerConnection, None), HubConfig(send_queue_bytes=1000), "127.0.0.1:1")
    peer.send(b"x" * 5000)  # a sync step 2 larger than the whole queue
    assert peer.queued == (1, 5000)
    peer.send(b"y" * 10)  # past the cap with something queued: dropped, resync instead
    assert peer.queued == (0, 0) and peer.resyncs == 1


def test_a_room_larger_than_the_send_queue_can_be_joined(tmp_path: Path) -> None:
    """Review finding: the sync step 2 of a room over --send-queue-bytes was dropped and the
    resync sent as a plain update, so a joining client never counted as synced."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", send_queue_bytes=64 * 1024) as hub:
            url = hub.url + "/big"
            async with crdtdoc.connect(url, agent="writer") as writer:
                writer.document("d").insert(0, "z" * 300_000)
                await writer.flush(timeout=10)
            async with crdtdoc.connect(url, agent="joiner") as joiner:
                await joiner.flush(timeout=10)
                assert len(joiner.document("d").read()) == 300_000

    run(body(), timeout=60)


def test_a_lagging_client_is_resynced_with_less_than_the_room_and_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real client whose connection stalls (its sends held back) while 100 edits, deletions
    of old text among them, overflow its queue of 16: the resync carries what it lacks since
    its queue last drained, a fraction of the room, and it ends with exactly the room."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", send_queue_messages=16) as hub:
            url = hub.url + "/lag"
            async with (
                crdtdoc.connect(url, agent="writer") as writer,
                crdtdoc.connect(url, agent="lagger") as lagger,
            ):
                text = writer.document("d")
                text.insert(0, "".join(f"{i:05d}" for i in range(10_000)))
                await lagger.wait_for(writer.version(), timeout=10)
                room = hub.rooms["lag"]
                peer = next(p for p in room.peers if p.agent == "lagger")
                for _ in range(200):  # its queue drained after the room was sent
                    if peer.queued == (0, 0) and peer.delivered and peer.delivered.state:
                        break
                    await asyncio.sleep(0.01)
                stalled = asyncio.Event()
                send = peer.ws.send

                async def held_back(message: Any, *args: Any, **kwargs: Any) -> None:
                    await stalled.wait()
                    await send(message, *args, **kwargs)

                peer.ws.send = held_back  # type: ignore[method-assign]
                write_now = server.peer._write_now  # its socket "full": every send waits
                monkeypatch.setattr(
                    server.peer, "_write_now", lambda ws, m: ws is not peer.ws and write_now(ws, m)
                )
                for i in range(100):
                    if i % 2:
                        text.delete(400 * i, 3)
                    else:
                        text.insert(200 * i, "new")
                    await asyncio.sleep(0.002)
                await writer.flush(timeout=10)
                assert peer.resyncs >= 1
                sizes: list[int] = []
                peer.on_sent = lambda count, size: sizes.append(size)
                stalled.set()
                await lagger.wait_for(writer.version(), timeout=10)
                assert lagger.document("d").read() == writer.document("d").read()
                assert lagger.version() == room.replica.version()
                whole = len(room.whole_state())
                assert sum(sizes) * 4 < whole, (sizes, whole)

    run(body(), timeout=60)


def test_updates_waiting_for_a_peer_leave_as_one_message() -> None:
    """Under a burst, what waits for a peer's writer goes out with each run of updates merged:
    one send (and frame) instead of one per update, presence kept in its place."""
    from crdtdoc import Replica
    from crdtdoc.protocol.messages import Awareness, SyncUpdate, decode_message, encode_message

    sent: list[bytes] = []

    class Connection:
        class protocol:  # websockets' attribute, not open: the writer awaits send()
            state = None

        async def send(self, message: bytes) -> None:
            sent.append(message)

    writer, reader = Replica("writer"), Replica("reader")
    peer = Peer(cast(ServerConnection, Connection()), HubConfig(), "127.0.0.1:1")
    presence = encode_message(Awareness(b"\x00"))
    for i in range(10):
        before = writer.version()
        writer.document("d").insert(0, f"edit {i} ")
        peer.send(encode_message(SyncUpdate(writer.encode_update(before))))
        if i == 4:
            peer.send(presence)

    async def drain() -> None:
        task = asyncio.get_running_loop().create_task(peer.run_writer())
        while peer.queued[0]:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(drain())
    assert len(sent) == 3 and sent[1] == presence
    for message in sent:
        decoded = decode_message(message)
        if isinstance(decoded, SyncUpdate):
            reader.apply_update(decoded.update)
    assert reader.document("d").read() == writer.document("d").read()

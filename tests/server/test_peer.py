"""A peer's send queue: bounded, overflow turns into a resync, and one message alone always fits
(a room larger than the queue can still be joined)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.asyncio.server import ServerConnection

import crdtdoc
import crdtdoc.server.peer
from crdtdoc.server.config import HubConfig
from crdtdoc.server.peer import Peer
from crdtdoc.updates import encode_state_vector
from tests.support.aio import run
from tests.support.hubs import running_hub


def test_one_message_alone_always_fits_and_a_backlog_over_the_cap_is_dropped() -> None:
    """The first message waiting does not count against the byte cap (user review: a joiner
    of a room larger than the cap had its step 2 dropped by the next edit, and was sent the
    room twice); what queues behind it does."""
    peer = Peer(cast(ServerConnection, None), HubConfig(send_queue_bytes=1000), "127.0.0.1:1")
    peer.send(b"x" * 5000)  # a sync step 2 larger than the whole queue
    assert peer.queued == (1, 5000)
    peer.send(b"y" * 10)  # an edit behind it: queued
    assert peer.queued == (2, 5010) and peer.resyncs == 0
    peer.send(b"z" * 995)  # the backlog behind it past the cap: dropped, resync instead
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
                write_now = crdtdoc.server.peer._write_now  # its socket "full": every send waits
                monkeypatch.setattr(
                    crdtdoc.server.peer,
                    "_write_now",
                    lambda ws, m: ws is not peer.ws and write_now(ws, m),
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


def _writer_output(peer: Peer) -> list[bytes]:
    """Runs `peer`'s writer against a connection that records what is sent, until idle."""
    sent: list[bytes] = []

    class Connection:
        class protocol:  # websockets' attribute, not open: the writer awaits send()
            state = None

        async def send(self, message: bytes) -> None:
            sent.append(message)

    peer.ws = cast(ServerConnection, Connection())

    async def drain() -> None:
        task = asyncio.get_running_loop().create_task(peer.run_writer())
        for _ in range(50):
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(drain())
    return sent


def test_updates_waiting_for_a_peer_leave_as_one_message() -> None:
    """Under a burst, what waits for a peer's writer goes out with each run of updates merged:
    one send (and frame) instead of one per update, presence kept in its place."""
    from crdtdoc import Replica
    from crdtdoc.protocol.messages import Awareness, SyncUpdate, decode_message, encode_message

    writer, reader = Replica("writer"), Replica("reader")
    peer = Peer(cast(ServerConnection, None), HubConfig(), "127.0.0.1:1")
    presence = encode_message(Awareness(b"\x00"))
    for i in range(10):
        before = writer.version()
        writer.document("d").insert(0, f"edit {i} ")
        peer.send(encode_message(SyncUpdate(writer.encode_update(before))))
        if i == 4:
            peer.send(presence)

    sent = _writer_output(peer)
    assert len(sent) == 3 and sent[1] == presence
    for message in sent:
        decoded = decode_message(message)
        if isinstance(decoded, SyncUpdate):
            reader.apply_update(decoded.update)
    assert reader.document("d").read() == writer.document("d").read()


def test_replies_survive_a_dropped_queue_and_follow_the_resync() -> None:
    """User review: a lagging peer's queue was dropped with the replies in it, and a reply
    queued while the resync was pending was dropped too; the resync resends the room, not
    replies, so `next` and `acquire` timed out though the hub had taken the number and granted
    the lease. Replies (and the welcome) are kept and go right after the resync, in order."""
    peer = Peer(cast(ServerConnection, None), HubConfig(send_queue_messages=3), "127.0.0.1:1")
    peer.resync = lambda p: [b"resync"]
    peer.send(b"update 1")
    peer.send(b"reply 1", keep=True)
    peer.send(b"update 2")
    peer.send(b"update 3")  # past the cap: dropped, reply 1 kept
    peer.send(b"reply 2", keep=True)  # while the resync is pending
    peer.send(b"update 4")  # covered by the resync
    assert peer.resyncs == 1
    assert _writer_output(peer) == [b"resync", b"reply 1", b"reply 2"]


def test_a_written_resync_is_where_the_next_one_starts() -> None:
    """User review: a peer that kept falling behind was resent ever larger resyncs (4 MB to
    19 MB), since the delivery point moved only when its queue drained."""
    from crdtdoc.server.peer import Delivered

    peer = Peer(cast(ServerConnection, None), HubConfig(send_queue_messages=2), "127.0.0.1:1")
    covered = Delivered({1: 10}, None)

    def resync(p: Peer) -> list[bytes]:
        p.resynced = covered
        return [b"resync"]

    peer.resync = resync
    for i in range(3):
        peer.send(f"update {i}".encode())
    _writer_output(peer)
    assert peer.delivered is not None and peer.delivered.state == {1: 10}


def test_what_a_turn_sends_a_keeping_up_peer_is_written_at_its_end_merged() -> None:
    """Paced fan-out cost a task switch per peer per update (the writer woken for one message);
    now the end of the event loop's turn writes what each peer was sent during it, merged,
    and the writer is woken only for a socket that does not keep up."""
    from websockets.protocol import State

    from crdtdoc import Replica
    from crdtdoc.protocol.messages import SyncUpdate, decode_message, encode_message

    written: list[bytes] = []
    awaited: list[bytes] = []

    class Connection:
        class protocol:
            state = State.OPEN

            @staticmethod
            def send_binary(message: bytes) -> None:
                written.append(message)

        class transport:
            @staticmethod
            def get_write_buffer_size() -> int:
                return 0

        def send_data(self) -> None:
            pass

        async def send(self, message: bytes) -> None:
            awaited.append(message)

    writer, reader = Replica("writer"), Replica("reader")
    peer = Peer(cast(ServerConnection, Connection()), HubConfig(), "127.0.0.1:1")

    async def body() -> None:
        task = asyncio.get_running_loop().create_task(peer.run_writer())
        await asyncio.sleep(0.01)  # the writer waits, idle
        for i in range(3):  # one turn: three updates
            before = writer.version()
            writer.document("d").insert(0, f"edit {i} ")
            peer.send(encode_message(SyncUpdate(writer.encode_update(before))))
        await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(body())
    assert len(written) == 1 and awaited == []
    decoded = decode_message(written[0])
    assert isinstance(decoded, SyncUpdate)
    reader.apply_update(decoded.update)
    assert reader.document("d").read() == writer.document("d").read()


def test_only_the_first_announcement_counts_and_offline_work_ends_with_the_sync() -> None:
    """A link's offline work is what it sends up to its first sync step 2, with the state its
    first step 1 announced (attack review: every later step 1 was merged in, growing memory
    without bound, and let a connected writer re-announce itself offline)."""
    peer = Peer(cast(ServerConnection, None), HubConfig(), "127.0.0.1:1")
    assert peer.offline_state() is None
    peer.announce(encode_state_vector({1: 5}))
    peer.announce(encode_state_vector({1: 2**31, 2: 9}))  # ignored
    assert peer.offline_state() == {1: 5}
    peer.synced_offline_work()
    assert peer.offline_state() is None and peer.announced == {1: 5}


def test_a_late_or_second_announcement_opens_no_offline_window() -> None:
    """Attack review: a link that sent no step 1 (or one too large to note), or a step 2 first,
    could open the offline window later with a small step 1."""
    too_large = encode_state_vector({c: 1 for c in range(2**40, 2**40 + 20_000)})
    for first in (too_large, None):
        peer = Peer(cast(ServerConnection, None), HubConfig(), "127.0.0.1:1")
        if first is None:
            peer.synced_offline_work()  # a step 2 before any step 1
        else:
            peer.announce(first)
        peer.announce(encode_state_vector({1: 5}))
        assert peer.offline_state() is None

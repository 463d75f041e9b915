"""A peer's send queue: bounded, overflow turns into a resync, and one message alone always fits
(a room larger than the queue can still be joined)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from websockets.asyncio.server import ServerConnection

import crdtdoc
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

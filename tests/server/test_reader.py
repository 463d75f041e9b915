"""One identity's connections take turns (server/reader.py): its debts hold over
all of them, so opening many connections does not multiply what it can make the hub do or hold
at once (review findings: 32 connections each answered a whole room, or each held a parsed
megabyte, before any debt was counted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

import crdtdoc
from crdtdoc.protocol.messages import SyncStep1, SyncStep2, decode_message, encode_message
from crdtdoc.tokens import create_token
from tests.support.aio import run
from tests.support.hubs import running_hub

SECRET = b"turns-secret-turns-secret-turns!"


async def answered(ws: ClientConnection, within: float) -> bool:
    """Whether a sync step 2 arrives on `ws` within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                if isinstance(decode_message(await ws.recv()), SyncStep2):
                    return True
    except TimeoutError:
        return False


def test_many_connections_of_one_identity_share_one_debt(tmp_path: Path) -> None:
    async def body() -> None:
        settings = dict(secret=SECRET, update_bytes_per_second=500_000.0)
        async with running_hub(tmp_path / "hub.db", **settings) as hub:
            url = hub.url + "/big"
            writer = crdtdoc.connect(url, agent="w", token=create_token(SECRET, "w"))
            async with writer:
                writer.document("d").insert(0, "z" * 900_000)
                await writer.flush(timeout=20)
            reader = create_token(SECRET, "mallory", read_only=True)
            links = [await ws_connect(f"{url}?token={reader}", max_size=None) for _ in range(8)]
            try:
                for ws in links:
                    await ws.send(encode_message(SyncStep1(b"\x00")))
                results = await asyncio.gather(*(answered(ws, 0.8) for ws in links))
                # 8 x 0.9 MB at 0.5 MB/s (bursts of 1 MB): at most a couple answered at once
                assert sum(results) <= 3, results
                # ...and the rest are answered later, not refused
                late = await asyncio.gather(
                    *(
                        answered(ws, 30.0)
                        for ws, done in zip(links, results, strict=True)
                        if not done
                    )
                )
                assert all(late)
            finally:
                for ws in links:
                    await ws.close()

    run(body(), timeout=90)

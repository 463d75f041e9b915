"""`/metrics`, `/readyz`: the numbers appear, and move under load."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import crdtdoc
from crdtdoc.tokens import create_token
from tests.server.test_security import SECRET, token
from tests.support.aio import run
from tests.support.hubs import running_hub


def scrape(url: str, path: str = "/metrics", bearer: str | None = None) -> tuple[int, str]:
    http = url.replace("ws://", "http://") + path
    request = urllib.request.Request(http)
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def value(text: str, name: str) -> float:
    """The value of an unlabelled sample, or the sum of a labelled family."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_appear_and_move_under_load(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", compact_log_updates=20) as hub:
            loop = asyncio.get_running_loop()
            status, before = await loop.run_in_executor(None, scrape, hub.url)
            assert status == 200 and "crdtdoc_connections 0.0" in before
            assert (await loop.run_in_executor(None, scrape, hub.url, "/readyz"))[0] == 200
            async with (
                crdtdoc.connect(hub.url + "/m", agent="a") as a,
                crdtdoc.connect(hub.url + "/m", agent="b") as b,
            ):
                for i in range(60):
                    a.document("d").append(f"{i};")
                    await asyncio.sleep(0)
                await a.flush()
                await b.wait_for(a.version(), timeout=10)
                await asyncio.sleep(0.15)  # the event loop's lag is measured every 50 ms
                _, during = await loop.run_in_executor(None, scrape, hub.url)
            assert value(during, "crdtdoc_connections") == 2
            assert value(during, "crdtdoc_rooms_loaded") == 1
            assert 0 <= value(during, "crdtdoc_event_loop_lag_max_seconds") < 60
            for tally in ("messages_received", "bytes_received", "messages_sent", "bytes_sent"):
                assert f"crdtdoc_{tally}_created " in during, tally  # as a Counter reports it
            for name in (
                "crdtdoc_messages_received_total",
                "crdtdoc_bytes_received_total",
                "crdtdoc_messages_sent_total",
                "crdtdoc_bytes_sent_total",
                "crdtdoc_store_commit_seconds_count",
                "crdtdoc_receive_to_durable_seconds_count",
                "crdtdoc_compactions_total",
                "crdtdoc_event_loop_lag_seconds_count",
            ):
                assert value(during, name) > value(before, name), name
            # A refusal is counted by its reason.
            from websockets.asyncio.client import connect as ws_connect

            async with ws_connect(hub.url + "/m") as raw:
                await raw.send(b"\xff\xff")
                await raw.wait_closed()
            _, after = await loop.run_in_executor(None, scrape, hub.url)
            assert 'crdtdoc_refusals_total{reason="InvalidMessage"} 1.0' in after
            # A message over --max-message-bytes is closed by websockets itself, and counted.
            async with ws_connect(hub.url + "/m", max_size=None) as raw:
                await raw.send(b"\x00" * (hub.config.max_message_bytes + 1))
                await raw.wait_closed()
            for _ in range(20):
                _, after = await loop.run_in_executor(None, scrape, hub.url)
                if 'reason="MessageTooBig"' in after:
                    break
                await asyncio.sleep(0.05)
            assert 'crdtdoc_refusals_total{reason="MessageTooBig"} 1.0' in after

    run(body(), timeout=60)


def test_with_a_secret_metrics_need_a_token_and_health_stays_open(tmp_path: Path) -> None:
    """On a hub with a secret, /metrics answers only a valid token (any room scope, read-only
    is enough: a scraper's token may allow no room at all); /healthz and /readyz answer load
    balancers without one and say nothing about rooms."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            loop = asyncio.get_running_loop()

            async def get(path: str, bearer: str | None = None) -> tuple[int, str]:
                return await loop.run_in_executor(None, scrape, hub.url, path, bearer)

            room = "secret-project-x"
            async with crdtdoc.connect(f"{hub.url}/{room}", agent="alice", token=token("alice")):
                status, text = await get("/metrics")
                assert status == 401 and "token" in text and "crdtdoc_" not in text
                assert (await get("/metrics", bearer="forged.token"))[0] == 401
                other = create_token(b"another-secret-of-32-bytes-long!", "eve")
                assert (await get("/metrics", bearer=other))[0] == 401
                expired = token("prometheus", ttl=1, now=0)
                assert (await get("/metrics", bearer=expired))[0] == 401
                scraper = token("prometheus", rooms="", read_only=True)  # allows no room
                status, text = await get("/metrics", bearer=scraper)
                assert status == 200 and value(text, "crdtdoc_connections") == 1
                assert room not in text and "alice" not in text
                status, text = await get(f"/metrics?token={scraper}")
                assert status == 200 and "crdtdoc_rooms_loaded 1.0" in text
                for path, answer in (("/healthz", "ok\n"), ("/readyz", "ready\n")):
                    assert await get(path) == (200, answer)

    run(body(), timeout=30)

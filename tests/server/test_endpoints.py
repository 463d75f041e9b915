"""The hub's plain HTTP answers (`crdtdoc.server.endpoints`), asked over a real in-process hub's
port: health and readiness (and why not ready), metrics as Prometheus text, the room pages and
their JSON state under percent-decoded names, bad room names, a hub out of rooms or connections,
a room that cannot be read, and with a secret, pages behind a bearer token that list only the
rooms it allows."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.server import ServerProtocol

import crdtdoc
import crdtdoc.server.endpoints
from crdtdoc.errors import InvalidUpdate
from crdtdoc.server.endpoints import answer_http
from tests.server.test_security import SECRET, token
from tests.support.aio import run
from tests.support.hubs import running_hub


def get_blocking(url: str, bearer: str | None) -> tuple[int, Message, str]:
    request = urllib.request.Request(url.replace("ws://", "http://"))
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


async def get(url: str, bearer: str | None = None) -> tuple[int, Message, str]:
    """Status, headers and body of a plain GET (an HTTP error is an answer too)."""
    return await asyncio.get_running_loop().run_in_executor(None, get_blocking, url, bearer)


def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            status, _, text = await get(f"{hub.url}/healthz?probe=lb")  # the query is ignored
            assert (status, text) == (200, "ok\n")
            assert (await get(f"{hub.url}/readyz"))[::2] == (200, "ready\n")
            status, headers, text = await get(f"{hub.url}/metrics")  # no secret: open
            assert status == 200
            assert headers.get_all("Content-Type") == ["text/plain; version=0.0.4; charset=utf-8"]
            assert "crdtdoc_connections 0.0" in text and "# TYPE" in text

            hub.committer.failure = "database or disk is full"  # the store stops committing
            status, _, text = await get(f"{hub.url}/readyz")
            assert (status, text) == (503, "store failing: database or disk is full\n")
            assert (await get(f"{hub.url}/healthz"))[0] == 200  # the process still runs
            hub.committer.failure = None
            assert (await get(f"{hub.url}/readyz"))[0] == 200

    run(body(), timeout=30)


def test_a_hub_not_accepting_is_not_ready() -> None:
    """Before it starts or once it closes (not reachable over a socket): asked directly."""
    hub = SimpleNamespace(accepting=False, committer=SimpleNamespace(failure=None))
    ws = SimpleNamespace(respond=ServerProtocol().reject)

    async def ask(path: str) -> tuple[int, bytes]:
        response = await answer_http(hub, ws, Request(path, {}))  # type: ignore[arg-type]
        assert response is not None
        return response.status_code, bytes(response.body)

    assert asyncio.run(ask("/readyz")) == (503, b"not ready\n")
    assert asyncio.run(ask("/healthz")) == (200, b"ok\n")


def test_room_pages_state_and_list_without_a_secret(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            status, headers, text = await get(f"{hub.url}/rooms/design%20notes/state")
            assert status == 200 and headers["Content-Type"] == "application/json"
            assert json.loads(text)["room"] == "design notes"  # the name, percent-decoded
            assert list(hub.rooms) == ["design notes"]  # loaded to be shown
            status, headers, text = await get(f"{hub.url}/rooms/design%20notes")
            assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
            assert "/state" in text
            status, headers, text = await get(f"{hub.url}/")
            assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
            assert 'href="/rooms/design%20notes"' in text
            for bad, why in (("/rooms/", "no room in the URL"), ("/rooms/a%01b", "printable")):
                status, _, text = await get(hub.url + bad)
                assert status == 400 and why in text, (bad, text)
            assert list(hub.rooms) == ["design notes"]  # nothing loaded for a refusal

    run(body(), timeout=30)


def test_a_room_that_cannot_be_read_is_a_500_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def damaged(room: Any) -> dict[str, Any]:
        raise InvalidUpdate("entry 3 is damaged")

    monkeypatch.setattr(crdtdoc.server.endpoints, "room_state", damaged)

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            status, _, text = await get(f"{hub.url}/rooms/team/state")
            assert (status, text) == (500, "cannot read the room: entry 3 is damaged\n")
            assert (await get(f"{hub.url}/rooms/team"))[0] == 200  # the page itself is static
            assert (await get(f"{hub.url}/healthz"))[0] == 200

    run(body(), timeout=30)


def test_a_hub_out_of_rooms_or_connections_says_503(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", max_rooms=1, max_connections=1) as hub:
            async with crdtdoc.connect(f"{hub.url}/busy", agent="ann"):
                with pytest.raises(InvalidStatus) as full:
                    async with ws_connect(f"{hub.url}/other"):
                        pass
                assert full.value.response.status_code == 503
                assert b"at most 1 connections" in full.value.response.body
                assert (await get(f"{hub.url}/healthz"))[0] == 200  # plain HTTP still answered
                status, _, text = await get(f"{hub.url}/rooms/other/state")
                assert status == 503 and "at most 1 rooms" in text
            for _ in range(100):  # ann's room is unloaded once she left and it is durable
                status, _, text = await get(f"{hub.url}/rooms/other/state")
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert status == 200 and json.loads(text)["room"] == "other"

    run(body(), timeout=30)


def test_with_a_secret_pages_take_a_bearer_token_and_list_only_its_rooms(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            admin = token("admin")
            for room in ("team", "team-2", "elsewhere"):
                assert (await get(f"{hub.url}/rooms/{room}/state", admin))[0] == 200
            viewer = token("viewer", rooms="team*", read_only=True)
            status, _, text = await get(f"{hub.url}/rooms/team/state", viewer)
            assert status == 200 and json.loads(text)["room"] == "team"
            status, _, text = await get(f"{hub.url}/rooms/elsewhere", viewer)
            assert status == 403
            status, _, text = await get(f"{hub.url}/rooms/team", "forged.token")
            assert status == 401
            status, _, listing = await get(f"{hub.url}/", viewer)
            assert status == 200
            assert 'href="/rooms/team"' in listing and 'href="/rooms/team-2"' in listing
            assert "elsewhere" not in listing
            status, _, listing = await get(f"{hub.url}/?token={viewer}")  # links keep the token
            assert f'href="/rooms/team?token={viewer}"' in listing
            status, _, text = await get(f"{hub.url}/metrics", viewer)  # any valid token
            assert status == 200 and "elsewhere" not in text

    run(body(), timeout=30)

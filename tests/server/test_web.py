"""The supervision page and its state: what the room holds now, behind the room's tokens."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import crdtdoc
from tests.hubs import run, running_hub
from tests.server.test_security import SECRET, token


def get(url: str) -> tuple[int, str, str]:
    http = url.replace("ws://", "http://")
    try:
        with urllib.request.urlopen(http, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def fetch(url: str) -> tuple[int, str, str]:
    return await asyncio.get_running_loop().run_in_executor(None, get, url)


def test_the_page_shows_agents_artifacts_conflicts_and_changes(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            room = hub.url + "/team"
            async with (
                crdtdoc.connect(room, agent="alice", token=token("alice")) as alice,
                crdtdoc.connect(room, agent="bob", token=token("bob")) as bob,
            ):
                alice.set_presence(status="writing", task="design")
                alice.document("design").write("# Design\nids are UUIDs\n")
                first = alice.tasks("backlog").add("schema")
                alice.tasks("backlog").claim(first)
                contested = alice.tasks("backlog").add("migration")
                await alice.flush()
                await bob.wait_for(alice.version(), timeout=10)
                # Concurrent claims and concurrent spec values, made offline, then synced.
                a, b = crdtdoc.Replica("alice"), crdtdoc.Replica("bob")
                for r in (a, b):
                    r.apply_update(alice.encode_update())
                a.tasks("backlog").claim(contested)
                b.tasks("backlog").claim(contested)
                a.spec("api").set("User.id", "UUID")
                b.spec("api").set("User.id", 42)
                alice.apply_update(a.encode_update())  # each through its own agent's link
                bob.apply_update(b.encode_update())
                await alice.flush()
                await bob.flush()
                viewer = token("supervisor", read_only=True)
                status, kind, text = await fetch(
                    f"{room.replace('/team', '')}/rooms/team/state?token={viewer}"
                )
                assert status == 200 and kind == "application/json", text
                state: dict[str, Any] = json.loads(text)
                for _ in range(50):  # presence arrives asynchronously
                    if any(
                        p["agent"] == "alice" and p["status"] == "writing" for p in state["agents"]
                    ):
                        break
                    await asyncio.sleep(0.05)
                    state = json.loads(
                        (await fetch(f"{hub.url}/rooms/team/state?token={viewer}"))[2]
                    )
                assert {p["agent"] for p in state["agents"]} == {"alice", "bob"}
                assert all(p["behind_messages"] == 0 for p in state["agents"])  # both caught up
                by_name = {a["name"]: a for a in state["artifacts"]}
                assert by_name["design"]["text"] == "# Design\nids are UUIDs\n"
                tasks = {t["title"]: t for t in by_name["backlog"]["tasks"]}
                assert tasks["schema"]["status"] == "claimed"
                assert tasks["schema"]["assignee"] == "alice"
                assert tasks["migration"]["contested"] is True
                members = {m["member"]: m for m in by_name["api"]["members"]}
                assert members["User.id"]["conflict"] is True
                assert any("alice" in c["text"] for c in state["changes"])
                status, kind, html = await fetch(f"{hub.url}/rooms/team?token={viewer}")
                assert status == 200 and kind.startswith("text/html")
                assert "/state" in html and '"team"' in html
                status, _, listing = await fetch(f"{hub.url}/?token={viewer}")
                assert status == 200 and "/rooms/team?token=" in listing

    run(body(), timeout=60)


def test_the_page_refuses_requests_without_a_valid_token(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            assert (await fetch(f"{hub.url}/rooms/team/state"))[0] == 401
            assert (await fetch(f"{hub.url}/rooms/team?token=forged"))[0] == 401
            other = token("eve", rooms="elsewhere-*")
            assert (await fetch(f"{hub.url}/rooms/team/state?token={other}"))[0] == 403
            assert hub.rooms == {}  # nothing was loaded for a refused request
            assert (await fetch(f"{hub.url}/"))[0] == 401
            assert "no room is loaded" in (await fetch(f"{hub.url}/?token={other}"))[2]

    run(body(), timeout=30)

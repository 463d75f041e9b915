"""The supervision page and its state: what the room holds now, behind the room's tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import urllib.error
import urllib.request
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import crdtdoc
from tests.server.test_security import SECRET, token
from tests.support.aio import run
from tests.support.hubs import running_hub


def get_full(url: str) -> tuple[int, Message, str]:
    """Status, headers and body of a GET (an HTTP error is an answer too)."""
    http = url.replace("ws://", "http://")
    try:
        with urllib.request.urlopen(http, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def get(url: str) -> tuple[int, str, str]:
    status, headers, text = get_full(url)
    return status, headers["Content-Type"], text


async def fetch(url: str) -> tuple[int, str, str]:
    return await asyncio.get_running_loop().run_in_executor(None, get, url)


async def fetch_full(url: str) -> tuple[int, Message, str]:
    return await asyncio.get_running_loop().run_in_executor(None, get_full, url)


# Room names that break out of a script string, an attribute or a JS line if pasted raw.
HOSTILE_ROOMS = [
    "x</script><script>window.__xss=1</script>",
    'q"uote</title><img src=x onerror=window.__xss=1>',
    "a'pos'+alert(1)+'",
    "lt<b>gt</b>",
    "amp&amp;&lt;",
    "line\u2028sep\u2029end",
]


def csp(headers: Message) -> dict[str, list[str]]:
    """The Content-Security-Policy header, as directive -> sources."""
    value = headers["Content-Security-Policy"]
    assert value, "no Content-Security-Policy header"
    directives: dict[str, list[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_hardened(headers: Message) -> dict[str, list[str]]:
    """The headers every HTTP answer of the hub carries: a strict CSP, nosniff, no referrer."""
    policy = csp(headers)
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        for source in policy.get(directive, []):
            assert source not in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:"), policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    return policy


class Markup(HTMLParser):
    """The tags, attributes and text of an HTML page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def inline_hashes(page: str, tag: str) -> set[str]:
    """CSP hash sources of the page's inline `<tag>` elements (what the policy must list)."""
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    }


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
                status, kind, page = await fetch(f"{hub.url}/rooms/team?token={viewer}")
                assert status == 200 and kind.startswith("text/html")
                assert "/state" in page
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


def test_no_room_name_reaches_the_page_as_markup_or_script(tmp_path: Path) -> None:
    """The page is the same static HTML whatever the room is called (the name only arrives in
    the JSON state, which the page shows as text), under a strict CSP."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            viewer = token("supervisor", read_only=True)
            status, headers, reference = await fetch_full(f"{hub.url}/rooms/team?token={viewer}")
            assert status == 200
            policy = assert_hardened(headers)
            # The page's own inline script and style are allowed by hash, nothing else is.
            assert inline_hashes(reference, "script") == set(policy["script-src"])
            assert inline_hashes(reference, "style") <= set(policy["style-src"])
            assert reference.count("<script") == 1
            for name in HOSTILE_ROOMS:
                url = f"{hub.url}/rooms/{quote(name, safe='')}"
                status, headers, text = await fetch_full(f"{url}?token={viewer}")
                assert status == 200, (name, text)
                assert text == reference, name  # nothing of the name is in the page
                assert_hardened(headers)
                status, headers, state = await fetch_full(f"{url}/state?token={viewer}")
                assert status == 200 and json.loads(state)["room"] == name
                assert headers["Content-Type"] == "application/json"
                assert_hardened(headers)
            # The list of rooms escapes every name, in text and in links.
            status, headers, listing = await fetch_full(f"{hub.url}/?token={viewer}")
            assert status == 200
            policy = assert_hardened(headers)
            markup = Markup(listing)
            allowed = {"html", "head", "meta", "title", "style", "body", "h1", "ul", "li", "a"}
            assert markup.tags <= allowed, markup.tags - allowed  # no <script>, <img>, <b>...
            # Inline style attributes and event handlers would need 'unsafe-inline'.
            assert markup.attributes <= {"lang", "charset", "href"}, markup.attributes
            assert inline_hashes(listing, "style") <= set(policy.get("style-src", []))
            for name in HOSTILE_ROOMS:
                assert name in markup.texts, name
            # Refusals carry the same headers.
            status, headers, _ = await fetch_full(f"{hub.url}/rooms/{quote(HOSTILE_ROOMS[0])}")
            assert status == 401
            assert_hardened(headers)

    run(body(), timeout=30)

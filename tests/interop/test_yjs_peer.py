"""A stock Yjs client (npm yjs + y-websocket, from the lockfile beside this file) and crdtdoc
agents edit one room through the hub; everyone converges and sees everyone's presence.

The Node peer edits at code point boundaries. A JS client that deletes or inserts inside a
surrogate pair is refused by the hub (rule 'surrogate pair': tests/interop/test_surrogate_split.py);
crdtdoc's own API counts code points and never splits a pair."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from pathlib import Path

import crdtdoc
from tests.support.aio import run
from tests.support.hubs import running_hub
from tests.support.services import unavailable

HERE = Path(__file__).parent


def node_peer_available() -> None:
    """Skips (or, with CRDTDOC_REQUIRE_SERVICES=1, fails) when Node or the npm packages are
    missing."""
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (HERE / "node_modules" / "y-websocket").is_dir():
        problem = f"run `npm ci --prefix {HERE}` to install the interop peer"
    if problem is not None:
        unavailable(problem)


async def _line(proc: asyncio.subprocess.Process, timeout: float = 30) -> dict[str, object]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise AssertionError("the Node peer exited early")
    result: dict[str, object] = json.loads(line)
    return result


@contextlib.asynccontextmanager
async def node_peer(script: str, hub_url: str, room: str) -> AsyncIterator[Process]:
    """Runs a Node peer script (beside this file) on the room; at the end closes its standard
    input, which tells it to leave, and waits for it."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / script),
        hub_url,
        room,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=sys.stderr,
    )
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)


def test_stock_yjs_client_and_crdtdoc_agents_converge(tmp_path: Path) -> None:
    node_peer_available()

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/interop"
            async with (
                crdtdoc.connect(url, agent="py-agent") as py,
                crdtdoc.connect(url, agent="py-other") as other,
            ):
                py.document("d").insert(0, "start ☃ ")
                async with node_peer("yjs_peer.mjs", hub.url, "interop") as proc:
                    assert (await _line(proc))["event"] == "synced"
                    for i in range(20):  # concurrent with the Node peer's edits
                        doc = py.document("d")
                        doc.insert(len(doc) // 2, f"py{i}é ")
                        other.document("d").append("😀")
                        await asyncio.sleep(0.005)
                    while "NODEDONE" not in py.document("d").read():
                        await py.wait_for(py.version(), timeout=1)
                        await asyncio.sleep(0.02)
                    py.document("d").append("PYDONE")
                    final = await _line(proc)
                    assert final["event"] == "final"
                    await py.flush()
                    await other.wait_for(py.version(), timeout=10)
                    text = py.document("d").read()
                    assert final["text"] == text == other.document("d").read()
                    # Every writer's characters arrived (each piece whole only if no later insert,
                    # the Node peer's own random ones included, landed inside it: not a given).
                    for piece in ("héllo", "😀", "中文", "ünïcödé", "py19é", "☃"):
                        assert all(char in text for char in piece), piece
                    assert "py-agent" in final["peers"]  # type: ignore[operator]
                    assert "node-peer" in [p.agent for p in py.peers()]

    run(body(), timeout=90)

"""A stock Yjs client deletes half an emoji (issue 17): the hub refuses it, nobody else's text
changes, and the room stays readable, for stock clients and crdtdoc agents, also after a restart.

Yjs counts text in UTF-16 code units, so `text.delete(2, 1)` on 'a😀b' deletes the low half of
the emoji (Yjs then keeps U+FFFD for each half). The semantic gate refuses any update that splits
a surrogate pair (`crdtdoc.semantics`, rule `surrogate pair`): the hub closes the client (1007),
which keeps its own text and is refused again each time it reconnects and resends the deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import crdtdoc
from tests.interop.test_yjs_peer import node_peer_available
from tests.support.aio import run
from tests.support.hubs import running_hub

HERE = Path(__file__).parent
ROOM = "emoji"
WAIT = 15.0  # seconds any one expected state may take


class YjsPeer:
    """One `surrogate_peer.mjs` process: commands in, events out (closes kept apart)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closes: list[dict[str, Any]] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            event = json.loads(line)
            if event["event"] == "closed":
                self.closes.append(event)
            else:
                await self.events.put(event)

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def event(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                event = await self.events.get()
                if event["event"] == name:
                    return event

    async def read(self) -> dict[str, Any]:
        """The text and its UTF-16 code units."""
        await self.send(op="read")
        return await self.event("text")

    async def wait_text(self, expected: str) -> None:
        async with asyncio.timeout(WAIT):
            while (await self.read())["text"] != expected:
                await asyncio.sleep(0.02)

    async def wait_closes(self, count: int) -> dict[str, Any]:
        """The `count`-th connection the hub closed."""
        async with asyncio.timeout(WAIT):
            while len(self.closes) < count:
                await asyncio.sleep(0.02)
        return self.closes[count - 1]


@contextlib.asynccontextmanager
async def yjs_peer(hub_url: str) -> AsyncIterator[YjsPeer]:
    """A synced stock Yjs client on the room; closing its standard input ends it."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "surrogate_peer.mjs"),
        hub_url,
        ROOM,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=sys.stderr,
    )
    peer = YjsPeer(proc)
    try:
        await peer.event("synced")
        yield peer
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
        peer.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await peer.reader


async def agent_reads(replica: crdtdoc.ConnectedReplica, expected: str) -> None:
    async with asyncio.timeout(WAIT):
        while replica.document("t").read() != expected:
            await asyncio.sleep(0.02)


def test_half_an_emoji_is_refused_and_the_room_stays_whole(tmp_path: Path) -> None:
    node_peer_available()
    db = tmp_path / "hub.db"

    async def body() -> str:
        async with running_hub(db) as hub:
            url = f"{hub.url}/{ROOM}"
            async with crdtdoc.connect(url, agent="py-agent") as py:
                py.document("t").insert(0, "a😀b")
                await py.flush()
                async with yjs_peer(hub.url) as offender, yjs_peer(hub.url) as other:
                    await offender.wait_text("a😀b")
                    await other.wait_text("a😀b")

                    await offender.send(op="delete", at=2, n=1)  # the emoji's low half
                    closed = await offender.wait_closes(1)
                    assert closed["code"] == 1007, closed
                    assert "surrogate pair" in closed["reason"], closed
                    # What the stock client sees: its own text (Yjs keeps U+FFFD for each half)
                    # and, as it resends the deletion on every reconnect, refusal after refusal.
                    assert (await offender.read())["units"] == [0x61, 0xFFFD, 0x62]
                    again = await offender.wait_closes(2)
                    assert again["code"] == 1007 and "surrogate pair" in again["reason"]
                    await offender.send(op="disconnect")
                    await offender.event("disconnected")

                    await other.send(op="insert", at=4, text="!")  # after 'a😀b': 4 UTF-16 units
                    await agent_reads(py, "a😀b!")
                    py.document("t").insert(len("a😀b!"), "?")  # crdtdoc counts code points
                    await py.flush()
                    await other.wait_text("a😀b!?")
                    assert other.closes == []
                expected = py.document("t").read()
                assert expected == "a😀b!?"
                async with yjs_peer(hub.url) as late:
                    await late.wait_text(expected)
                async with crdtdoc.connect(url, agent="late-agent") as late_agent:
                    assert late_agent.document("t").read() == expected
        async with running_hub(db) as hub:  # the same room, loaded from the hub's database
            url = f"{hub.url}/{ROOM}"
            async with crdtdoc.connect(url, agent="after-restart") as agent:
                assert agent.document("t").read() == expected
            async with yjs_peer(hub.url) as late:
                await late.wait_text(expected)
        return expected

    assert run(body(), timeout=90) == "a😀b!?"

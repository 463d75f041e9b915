"""`Outbox`: the messages waiting for one hub connection, sent in order by one writer task.

Sync updates that wait together leave merged (`crdtdoc.protocol.coalesce`), within `max_bytes`
per message: an agent editing faster than its link sends (a loop of edits with no await) costs
the hub one message per batch, not one parse, judgement and stored row per edit. The outbox is
bounded: past its bounds it is dropped and the connection closed, because the sync exchange of
the next connection sends the hub everything it lacks anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection

from crdtdoc.protocol.coalesce import coalesce

MAX_OUTBOX_MESSAGES = 4096
MAX_OUTBOX_BYTES = 16 * 1024 * 1024
"""Past these, the outbox is dropped and the link reconnects: the sync exchange on reconnect sends
the hub everything it lacks, so nothing is lost and memory stays bounded."""


class Outbox:
    """Messages for the current connection (see the module docstring)."""

    def __init__(self, ws: ClientConnection, max_bytes: Callable[[], int]) -> None:
        self.ws = ws
        self.max_bytes = max_bytes
        self.messages: deque[bytes] = deque()
        self.bytes = 0
        self.ready = asyncio.Event()
        self.overflowed = False

    def put(self, message: bytes) -> None:
        if self.overflowed:
            return
        if len(self.messages) >= MAX_OUTBOX_MESSAGES or self.bytes > MAX_OUTBOX_BYTES:
            self.overflowed = True  # the writer closes the link; reconnect resyncs
            self.messages.clear()
        else:
            self.messages.append(message)
            self.bytes += len(message)
        self.ready.set()

    async def run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.overflowed:
                await self.ws.close(1000, "client outbox overflow; reconnecting to resync")
                return
            while self.messages:
                waiting = list(self.messages)
                self.messages.clear()
                self.bytes = 0
                for message in coalesce(waiting, self.max_bytes()):
                    await self.ws.send(message)

"""pycrdt-websocket's server on `websockets`, as a benchmark peer.

Run: `python pycrdt_websocket_server.py PORT`.

Needs `pip install pycrdt-websocket` (the `bench` extra). Prints its address once listening.
"""

from __future__ import annotations

import asyncio
import sys

from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Channel:
    """The channel interface pycrdt-websocket serves, over a `websockets` connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self.path = ws.request.path if ws.request else "/"

    async def send(self, message: bytes) -> None:
        await self._ws.send(message)

    async def recv(self) -> bytes:
        data = await self._ws.recv()
        return data if isinstance(data, bytes) else data.encode()

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None


async def main(port: int) -> None:
    server = WebsocketServer()
    handler = lambda ws: server.serve(Channel(ws))  # noqa: E731
    async with server, serve(handler, "127.0.0.1", port, compression=None):
        print(f"pycrdt-websocket listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

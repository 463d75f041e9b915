"""`crdtdoc serve`: run a hub until SIGTERM or SIGINT, then shut down gracefully."""

from __future__ import annotations

import asyncio
import signal
import sys

from crdtdoc.server.config import HubConfig
from crdtdoc.server.hub import Hub
from crdtdoc.server.pgstore import redacted


async def serve(config: HubConfig) -> None:
    """Runs the hub; prints `crdtdoc hub listening on ws://HOST:PORT` once it accepts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Hub(config) as hub:
        print(f"crdtdoc hub listening on {hub.url} (database {redacted(config.db)})", flush=True)
        await stop.wait()
        print("crdtdoc hub shutting down", file=sys.stderr, flush=True)

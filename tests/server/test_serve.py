"""`crdtdoc serve` (`crdtdoc.server.serve`): says where it listens, without the database's
password, and shuts down gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc.server.config import HubConfig
from crdtdoc.server.serve import serve
from tests.support.aio import run
from tests.support.hubs import HubProcess
from tests.support.stored import stored_replica


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_hub_gracefully_with_its_rooms_stored(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "hub.db"
    hub = HubProcess(db)
    url = hub.start()

    async def write() -> None:
        async with crdtdoc.connect(url + "/r", agent="alice") as alice:
            alice.document("d").insert(0, "kept")
            await alice.flush()

    try:
        run(write())
        assert hub.kill(sig) == 0
    finally:
        hub.stop()
    assert "crdtdoc hub shutting down" in hub.stderr_text()
    assert stored_replica(db, "r").document("d").read() == "kept"


def test_serve_prints_where_it_listens_and_returns_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: the line agents and scripts wait for, then the signal handler's stop."""

    async def body() -> None:
        task = asyncio.create_task(serve(HubConfig(db=str(tmp_path / "hub.db"), port=0)))
        printed = ""
        while "listening" not in printed:
            assert not task.done()
            await asyncio.sleep(0.02)
            printed += capsys.readouterr().out
        line = printed.strip()
        assert re.fullmatch(
            r"crdtdoc hub listening on ws://127\.0\.0\.1:\d+ \(database (.*)\)", line
        ), line
        assert line.endswith(f"(database {tmp_path / 'hub.db'})")
        os.kill(os.getpid(), signal.SIGTERM)  # the hub's handler, not the default: no exit
        await asyncio.wait_for(task, 10)
        assert "crdtdoc hub shutting down" in capsys.readouterr().err

    run(body())

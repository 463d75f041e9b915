"""Running the real `crdtdoc` command against a real hub process, for the command-line tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.hubs import HubProcess


@pytest.fixture(scope="module", name="hub")
def cli_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = HubProcess(tmp_path_factory.mktemp("cli") / "hub.db")
    url = process.start()
    try:
        yield url
    finally:
        process.stop()


def cli(
    hub: str,
    *args: str,
    agent: str = "alice",
    room: str = "r",
    stdin: str | None = None,
    **settings: str,
) -> subprocess.CompletedProcess[str]:
    """Runs `crdtdoc ARGS` as `agent` in `room`; `settings`: more environment (CRDTDOC_...)."""
    env = dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT=agent, **settings)
    return subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    assert "Traceback" not in result.stderr
    return data

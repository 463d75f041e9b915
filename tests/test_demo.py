"""`crdtdoc demo`: its claims are asserted, not just printed."""

from __future__ import annotations

import subprocess
import sys

from crdtdoc.demo import run_demo
from tests.support.aio import run


def test_every_scene_fails_on_the_naive_store_and_holds_on_crdtdoc() -> None:
    result = run(run_demo(show=False), timeout=60)
    assert len(result.scenes) == 4
    for scene in result.scenes:
        assert not scene.naive_ok, scene
        assert scene.crdtdoc_ok, scene
    design, migrations, api, task = result.scenes
    assert "## Storage" in design.crdtdoc and "## API" in design.crdtdoc
    assert design.naive.count("##") == 1  # one section was lost
    assert migrations.naive.count("267_") == 2  # two files numbered 267
    assert "267_" in migrations.crdtdoc and "268_" in migrations.crdtdoc
    assert "getUserByEmail" in api.crdtdoc and "getUsersByRole" in api.crdtdoc
    assert task.naive == "worked by bob and alice" and task.crdtdoc.count(" and ") == 0


def test_the_command_prints_the_verdict_and_exits_0() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", "demo"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "crdtdoc got 4 of 4 right" in out.stdout
    assert "two migrations numbered 267" in out.stdout

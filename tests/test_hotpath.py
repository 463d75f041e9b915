"""Which build of the hot path runs (`crdtdoc.hotpath`): the compiled one only while it was
built from the source beside it, the pure-Python one on request, never a mix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crdtdoc import hotpath
from crdtdoc.hotpath import HOT_MODULES, built_modules, compiled_is_current, source_hash


def _package(tmp_path: Path, *, compiled: tuple[str, ...], recorded: dict[str, str]) -> Path:
    for module in HOT_MODULES:
        (tmp_path / f"{module}.py").write_text(f"# {module}\n")
    for module in compiled:
        (tmp_path / f"{module}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "_compiled.json").write_text(json.dumps(recorded))
    return tmp_path


def test_a_build_is_used_only_while_its_sources_are_the_ones_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(hotpath.PURE_ENV, raising=False)
    every = {m: "" for m in HOT_MODULES}
    fresh = _package(tmp_path, compiled=HOT_MODULES, recorded=every)
    every = {m: source_hash(m, fresh) for m in HOT_MODULES}
    (fresh / "_compiled.json").write_text(json.dumps(every))
    assert compiled_is_current(built_modules(fresh), fresh) == (
        True,
        "built with mypyc from this source",
    )
    (fresh / "idset.py").write_text("# edited since the build\n")
    current, why = compiled_is_current(built_modules(fresh), fresh)
    assert not current and "idset" in why and "reinstall" in why
    (fresh / "updates.cpython-311-x86_64-linux-gnu.so").unlink()
    assert not compiled_is_current(built_modules(fresh), fresh)[0]  # never a mix


def test_the_pure_python_path_can_be_asked_for() -> None:
    code = "import crdtdoc, crdtdoc.updates as u; print(crdtdoc.hotpath.describe(), u.__file__)"
    env = dict(os.environ, CRDTDOC_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "pure Python" in out and out.strip().endswith("updates.py"), out


@pytest.mark.skipif(
    not os.environ.get("CRDTDOC_REQUIRE_COMPILED") or bool(os.environ.get(hotpath.PURE_ENV)),
    reason="CI (.ci/run) requires the build, except where it asks for pure Python",
)
def test_ci_runs_the_compiled_hot_path() -> None:
    assert hotpath.COMPILED, hotpath.REASON

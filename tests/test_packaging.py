"""What `pip install` puts in site-packages: one top-level package, `crdtdoc`, with the hub
inside it as `crdtdoc.server` (the repository's server/ folder, through the link crdtdoc/server),
never a global `server` that would collide with another project's; and `crdtdoc bench`, which
runs the benchmarks of the checkout without importing them into the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_one_top_level_package_with_the_hub_inside(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "_compiled.json")
    for folder in ("crdtdoc", "server"):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=ignore)
    # Built as users get it: with the hot path compiled where there is a compiler (mypyc adds a
    # shared library of its own, which must land inside the package too).
    env = {k: v for k, v in os.environ.items() if k != "CRDTDOC_PURE_PYTHON"}
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path)]
    subprocess.run([*command, str(source)], env=env, check=True, timeout=900)
    (wheel,) = tmp_path.glob("crdtdoc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    if os.environ.get("CRDTDOC_REQUIRE_COMPILED"):  # CI: this machine has a compiler
        assert any(n.startswith("crdtdoc/_hotpath__mypyc") for n in names), names
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"crdtdoc"}
    assert "crdtdoc/server/hub.py" in names
    assert "crdtdoc/server/static/room.html" in names
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).split() == [b"crdtdoc"]


def test_bench_runs_the_checkouts_benchmarks_from_any_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", "bench", "trace", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: benchmarks trace" in result.stdout

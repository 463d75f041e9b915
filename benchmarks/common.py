"""What every benchmark shares: where results go, the machine and peer versions they ran with,
a progress bar for long runs, and the trace file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS as RESULTS
from benchmarks.report import ROOT as ROOT
from benchmarks.report import write_results

TRACE_DEFAULT = ROOT.parent.parent / "shared" / "data" / "automerge-paper.json.gz"


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def npm_version(package_dir: Path, name: str) -> str | None:
    manifest = package_dir / "node_modules" / name / "package.json"
    try:
        version: str = json.loads(manifest.read_text())["version"]
        return version
    except (OSError, ValueError, KeyError):
        return None


def results_dir(quick: bool) -> Path:
    """Where a run's results go: a `--quick` smoke run never overwrites the recorded full run."""
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save(name: str, report: dict[str, Any], markdown: str, folder: Path = RESULTS) -> None:
    """Writes <folder>/<name>.json (with date and machine) and <folder>/<name>.md, then, for
    the recorded results (not a quick run's), regenerates benchmarks/RESULTS.md."""
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        **report,
    }
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    if folder.resolve() == RESULTS.resolve():
        write_results()


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files; None (and a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is missing (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return None
    return plt


def trace_path(given: str | None) -> Path:
    path = Path(given or os.environ.get("CRDTDOC_TRACE") or TRACE_DEFAULT)
    if not path.is_file():
        sys.exit(
            f"the editing trace is not at {path}: pass --trace PATH (automerge-paper.json.gz from "
            "github.com/josephg/editing-traces, sequential_traces/) or set CRDTDOC_TRACE"
        )
    return path


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._tty = sys.stderr.isatty()

    def step(self, what: str = "") -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.0f}s elapsed, ~{eta:.0f}s left  {what}"
        )
        if self._tty:
            end = "\n" if self.done >= self.total else ""
            sys.stderr.write("\r" + line[:160].ljust(160) + end)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

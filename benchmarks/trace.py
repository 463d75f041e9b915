"""An editing trace replayed keystroke by keystroke: crdtdoc, raw pycrdt and Yjs side by side,
and the same trace streamed from one agent to another through a crdtdoc hub.

The trace is automerge-paper (259,778 single-character edits writing the LaTeX source of a paper,
CC BY 4.0; see shared/data/SOURCES.md). Each edit is one transaction, as an editor makes it.
Every implementation runs in its own process (so peak memory is its own), one after another,
`--repeat` times, interleaved; figures are medians. Reported: seconds, edits per second, final
encoded size (one Yjs update of the whole document), peak RSS, and whether the final text equals
the trace's.

- crdtdoc: `Replica.document("text")`, `insert`/`delete` with Python string indices (the
  replica converts to pycrdt's UTF-8 offsets, records each update, keeps the version);
- pycrdt: `pycrdt.Text` directly (the trace is ASCII, so its indices are already byte offsets);
- yjs: Y.Text in Node (`benchmarks/hub_load/trace_yjs.mjs`);
- through the hub: an agent replays the trace into a connected replica (each edit its own update,
  `flush()` every 2,000 edits as a checkpoint), a second agent in the same process receives it
  through a `crdtdoc serve` process; the time until the second agent has all of it (peak RSS is
  the two agents' process).

Run: `python -m benchmarks trace` (needs `npm ci --prefix benchmarks/hub_load` for Yjs).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Progress, npm_version, package_version, save, trace_path

DRIVER_DIR = ROOT / "hub_load"
IMPLEMENTATIONS = ["crdtdoc", "pycrdt", "yjs", "crdtdoc-through-hub"]


def load_trace(path: Path, edits: int | None = None) -> dict[str, Any]:
    """The trace; with `edits`, only its first edits (and the text they produce)."""
    data: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    if edits is not None:
        kept, text = [], ""
        for pos, deleted, inserted in patches(data)[:edits]:
            text = text[:pos] + inserted + text[pos + deleted :]
            kept.append({"patches": [[pos, deleted, inserted]]})
        data = {**data, "txns": kept, "endContent": text}
    return data


def patches(trace: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(p[0], p[1], p[2]) for txn in trace["txns"] for p in txn["patches"]]


def peak_rss_mib() -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def run_crdtdoc(trace: dict[str, Any]) -> dict[str, Any]:
    import crdtdoc

    edits = patches(trace)
    replica = crdtdoc.Replica(agent="typist")
    doc = replica.document("text")
    started = time.perf_counter()
    for pos, deleted, inserted in edits:
        if deleted:
            doc.delete(pos, deleted)
        if inserted:
            doc.insert(pos, inserted)
    seconds = time.perf_counter() - started
    return _result(seconds, len(edits), len(replica.encode_update()), doc.read(), trace)


def run_pycrdt(trace: dict[str, Any]) -> dict[str, Any]:
    from pycrdt import Doc, Text

    edits = patches(trace)
    ydoc: Doc[Any] = Doc()
    text = ydoc.get("text", type=Text)
    started = time.perf_counter()
    for pos, deleted, inserted in edits:
        with ydoc.transaction():
            if deleted:
                del text[pos : pos + deleted]
            if inserted:
                text.insert(pos, inserted)
    seconds = time.perf_counter() - started
    return _result(seconds, len(edits), len(ydoc.get_update()), str(text), trace)


def run_through_hub(trace: dict[str, Any]) -> dict[str, Any]:
    import crdtdoc
    from benchmarks.processes import hub_process

    edits = patches(trace)

    async def body(hub: str) -> dict[str, Any]:
        url = f"{hub}/trace"
        async with (
            crdtdoc.connect(url, agent="typist") as typist,
            crdtdoc.connect(url, agent="reader") as reader,
        ):
            doc = typist.document("text")
            started = time.perf_counter()
            for k, (pos, deleted, inserted) in enumerate(edits, 1):
                if deleted:
                    doc.delete(pos, deleted)
                if inserted:
                    doc.insert(pos, inserted)
                if k % 2000 == 0:
                    await typist.flush(timeout=300)
            await typist.flush(timeout=300)
            await reader.wait_for(typist.version(), timeout=600)
            seconds = time.perf_counter() - started
            return _result(
                seconds,
                len(edits),
                len(reader.encode_update()),
                reader.document("text").read(),
                trace,
            )

    # The hub in its own process, as in production; its per-connection rate limit (500
    # updates/s by default) is lifted, or it would batch the stream (see docs/SECURITY.md).
    with hub_process("--updates-per-second", "1000000", "--update-bytes-per-second", "1e9") as hub:
        return asyncio.run(body(hub.url))


def _result(
    seconds: float, ops: int, encoded: int, final: str, trace: dict[str, Any]
) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "ops": ops,
        "ops_per_s": ops / seconds,
        "encoded_bytes": encoded,
        "peak_rss_mib": peak_rss_mib(),
        "matches": final == trace["endContent"],
    }


def run_in_child(name: str, path: Path, edits: int | None) -> dict[str, Any]:
    if name == "yjs":
        cmd = ["node", str(DRIVER_DIR / "trace_yjs.mjs"), str(path)]
        if edits is not None:
            cmd.append(str(edits))
    else:
        cmd = [sys.executable, "-m", "benchmarks.trace", "--child", name, "--trace", str(path)]
        if edits is not None:
            cmd += ["--edits", str(edits)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"{name} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def markdown(medians: dict[str, dict[str, float]], ops: int) -> str:
    lines = [
        "| implementation | seconds | edits/s | vs yjs | encoded bytes | bytes vs yjs "
        "| peak RSS MiB | final text right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    yjs = medians.get("yjs", {}).get("seconds")
    yjs_bytes = medians.get("yjs", {}).get("encoded_bytes")
    for name, m in medians.items():
        ratio = f"{m['seconds'] / yjs:.1f}x slower" if yjs else "-"
        size = f"{m['encoded_bytes'] / yjs_bytes:.2f}x" if yjs_bytes else "-"
        if name == "yjs":
            ratio = "1x"
        lines.append(
            f"| {name} | {m['seconds']:.2f} | {m['ops_per_s']:,.0f} | {ratio} "
            f"| {m['encoded_bytes']:,.0f} | {size} | {m['peak_rss_mib']:.0f} "
            f"| {'yes' if m['matches'] else 'NO'} |"
        )
    return f"{ops:,} edits, one transaction each.\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", default=None, help="the trace file (.json.gz)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", action="append", choices=IMPLEMENTATIONS)
    parser.add_argument("--edits", type=int, default=None, help="only the first EDITS edits")
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = trace_path(args.trace)
    if args.child:
        trace = load_trace(path, args.edits)
        runner = {
            "crdtdoc": run_crdtdoc,
            "pycrdt": run_pycrdt,
            "crdtdoc-through-hub": run_through_hub,
        }[args.child]
        print(json.dumps(runner(trace)))
        return
    names = args.only or IMPLEMENTATIONS
    if "yjs" in names and not (DRIVER_DIR / "node_modules" / "yjs").is_dir():
        print("yjs is not installed (npm ci --prefix benchmarks/hub_load): skipping it")
        names = [n for n in names if n != "yjs"]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    progress = Progress(len(names) * args.repeat, "trace")
    for _ in range(args.repeat):
        for name in names:
            result = run_in_child(name, path, args.edits)
            runs[name].append(result)
            progress.step(f"{name}: {result['seconds']:.1f} s")
    medians = {
        name: {
            key: statistics.median(float(r[key]) for r in rs)
            for key in ("seconds", "ops_per_s", "encoded_bytes", "peak_rss_mib")
        }
        | {"matches": all(r["matches"] for r in rs)}
        for name, rs in runs.items()
    }
    ops = int(runs[names[0]][0]["ops"])
    headline = []
    if "crdtdoc" in medians and "yjs" in medians:
        c, y = medians["crdtdoc"], medians["yjs"]
        headline.append(
            f"crdtdoc replays the trace at {c['ops_per_s']:,.0f} edits/s, "
            f"{c['seconds'] / y['seconds']:.1f}x the time Yjs takes in Node "
            f"({y['ops_per_s']:,.0f} edits/s)"
            + (
                f" and {c['seconds'] / medians['pycrdt']['seconds']:.1f}x raw pycrdt's"
                if "pycrdt" in medians
                else ""
            )
            + "."
        )
        headline.append(
            f"Its document is {c['encoded_bytes']:,.0f} bytes, "
            f"{c['encoded_bytes'] / y['encoded_bytes']:.2f}x what Yjs stores for the same "
            "history"
            + (
                f" ({c['encoded_bytes'] / medians['pycrdt']['encoded_bytes']:.2f}x pycrdt's)"
                if "pycrdt" in medians
                else ""
            )
            + "."
        )
    if "crdtdoc-through-hub" in medians:
        h = medians["crdtdoc-through-hub"]
        headline.append(
            "Streamed through a hub to a second agent, one transaction per keystroke, flushed "
            f"every 2,000 (what waits leaves merged): "
            f"{h['ops_per_s']:,.0f} edits/s end to end ({h['seconds']:.0f} s for the trace)."
        )
    table = markdown(medians, ops)
    save(
        "trace",
        {
            "trace": path.name,
            "peers": {
                "crdtdoc": package_version("crdtdoc"),
                "pycrdt": package_version("pycrdt"),
                "yjs": npm_version(DRIVER_DIR, "yjs"),
                "node": _node_version(),
            },
            "headline": headline,
            "median": medians,
            "runs": runs,
        },
        "# Editing trace\n\n" + table,
    )
    print(table)


def _node_version() -> str | None:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()

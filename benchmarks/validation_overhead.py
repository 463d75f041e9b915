"""What validation and causal ordering cost: `Replica.apply_update` against raw pycrdt.

Both sides apply the same updates, in the same order, to a fresh document, interleaved in one
process so machine noise hits both alike; each figure is the median of several repetitions.
Workloads:

- agent-sized: what agents write (a sentence to a few paragraphs, spec/task map entries with JSON
  values, range deletions), 1,000 updates from 3 writers who see each other's work;
- paragraphs: 300 inserts of about 2 KB each (an agent pasting a drafted section);
- keystrokes: the first 5,000 edits of the automerge-paper trace, one character per update (the
  worst case for per-update overhead; shared/data, CC BY 4.0).

- whole document: the keystroke workload's final document as one update, applied to a fresh
  replica (a room load, a first sync);
- up-to-date peer's step 2: what a peer that has everything sends on reconnect (no structs, the
  document's whole delete set), applied to a replica holding that document: what every
  reconnect costs the hub;
- growing delete set: 2,000 small edits where every update carries the whole delete set so far
  (as `encode_update(since=...)` and pycrdt's `get_update(state)` make them); besides the mean,
  the cost of the last quarter over the first, for both sides (flat: about the same growth).

Each workload runs with the hot path this install has (compiled with mypyc, if it could be) and,
in a child process, with the pure-Python one (CRDTDOC_PURE_PYTHON=1), so the table shows both
builds' cost over raw pycrdt side by side (`crdtdoc.hotpath`).

Run: `python -m benchmarks.validation_overhead` (results in benchmarks/results/).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

import crdtdoc
from benchmarks.common import package_version, pyplot, save, trace_path
from crdtdoc import Replica
from crdtdoc.updates import parse_update

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PATH = "compiled" if crdtdoc.hotpath.COMPILED else "pure Python"
"""The hot path this process runs: the first column's label."""

WORDS = [
    "agent",
    "task",
    "spec",
    "design",
    "migration",
    "interface",
    "review",
    "merge",
    "conflict",
    "version",
]


def agent_sized(count: int = 1000, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    writers = [Replica(f"agent{i}") for i in range(3)]
    log: list[bytes] = []
    for w in writers:
        w.on_update(lambda u, local: log.append(u) if local else None)
    seen = [0] * 3
    while len(log) < count:
        i = rng.randrange(3)
        w = writers[i]
        if rng.random() < 0.3:
            for u in log[seen[i] :]:
                w.apply_update(u)
            seen[i] = len(log)
        roll = rng.random()
        doc = w.document("design")
        if roll < 0.5:
            n = rng.choice([8, 20, 60, 200])
            text = " ".join(rng.choice(WORDS) for _ in range(n)) + ".\n"
            doc.insert(rng.randint(0, len(doc)), text)
        elif roll < 0.65 and len(doc) > 50:
            start = rng.randrange(len(doc) - 40)
            doc.delete(start, rng.randint(1, 40))
        else:
            w.map("spec").set(
                f"{rng.choice(WORDS)}{rng.randrange(50)}",
                {"signature": "(x: str) -> dict", "owner": f"agent{i}", "rev": rng.randrange(99)},
            )
    return log[:count]


def paragraphs(count: int = 300, seed: int = 2) -> list[bytes]:
    """Whole sections (about 2 KB each, some non-ASCII), as an agent pasting a draft writes."""
    rng = random.Random(seed)
    r = Replica("drafter")
    log: list[bytes] = []
    r.on_update(lambda u, local: log.append(u))
    doc = r.document("design")
    for _ in range(count):
        text = " ".join(rng.choice([*WORDS, "café", "数据", "✓"]) for _ in range(300)) + "\n"
        doc.insert(rng.randint(0, len(doc)), text)
    return log


def keystrokes(count: int = 5000) -> list[bytes]:
    with gzip.open(trace_path(None), "rt") as f:
        trace = json.load(f)
    r = Replica("typist")
    log: list[bytes] = []
    r.on_update(lambda u, local: log.append(u))
    doc = r.document("paper")
    for txn in trace["txns"][:count]:
        for pos, deleted, inserted in txn["patches"]:
            if deleted:
                doc.delete(pos, deleted)
            if inserted:
                doc.insert(pos, inserted)
    return log


@dataclass(frozen=True)
class Workload:
    """Updates to apply, timed, after `setup` (applied first, untimed) to a fresh target."""

    name: str
    updates: list[bytes]
    setup: list[bytes] = field(default_factory=list)
    growth: bool = False  # report the last quarter's cost over the first


def _quarters(updates: list[bytes]) -> list[list[bytes]]:
    size = max(1, len(updates) // 4)
    return [updates[i : i + size] for i in range(0, len(updates), size)]


def _timed(apply: Callable[[bytes], object], updates: list[bytes]) -> list[float]:
    """Seconds per quarter of `updates` (timed as blocks: no clock read per update)."""
    times = []
    for part in _quarters(updates):
        start = time.perf_counter()
        for u in part:
            apply(u)
        times.append(time.perf_counter() - start)
    return times


def time_raw(work: Workload) -> list[float]:
    doc: Doc[Any] = Doc()
    for u in work.setup:
        doc.apply_update(u)
    return _timed(doc.apply_update, work.updates)


def time_replica(work: Workload) -> list[float]:
    replica = Replica("bench")
    for u in work.setup:
        replica.apply_update(u, trusted=True)
    return _timed(replica.apply_update, work.updates)


def time_parse(work: Workload) -> list[float]:
    return _timed(parse_update, work.updates)


def backlog_reversed(updates: list[bytes]) -> dict[str, object]:
    """A backlog arriving newest first: all of it waits, then drains when the first arrives."""
    reversed_order = Workload("reversed", [*reversed(updates[1:]), updates[0]])
    times = [sum(time_replica(reversed_order)) for _ in range(3)]
    in_order = [sum(time_replica(Workload("in order", updates))) for _ in range(3)]
    return {
        "workload": f"backlog of {len(updates)} delivered newest first",
        "reversed_s": round(statistics.median(times), 4),
        "in_order_s": round(statistics.median(in_order), 4),
        "reversed_over_in_order": round(statistics.median(times) / statistics.median(in_order), 3),
    }


def measure(work: Workload, repeats: int = 7) -> dict[str, object]:
    raw, ours, parse = [], [], []
    for _ in range(repeats):
        raw.append(time_raw(work))
        ours.append(time_replica(work))
        parse.append(time_parse(work))
    raw_s, ours_s, parse_s = (statistics.median(sum(q) for q in x) for x in (raw, ours, parse))
    count = len(work.updates)
    sizes = sorted(len(u) for u in work.updates)
    row: dict[str, object] = {
        "workload": work.name,
        "updates": count,
        "median_update_bytes": sizes[len(sizes) // 2],
        "raw_pycrdt_us_per_update": round(raw_s / count * 1e6, 2),
        "replica_us_per_update": round(ours_s / count * 1e6, 2),
        "parse_only_us_per_update": round(parse_s / count * 1e6, 2),
        "replica_over_raw": round(ours_s / raw_s, 3),
        "parse_over_raw": round(parse_s / raw_s, 3),
        "repeats": repeats,
    }
    if work.growth:
        for side, runs in (("raw", raw), ("replica", ours)):
            last = statistics.median(q[-1] for q in runs)
            first = statistics.median(q[0] for q in runs)
            row[f"{side}_last_over_first_quarter"] = round(last / first, 3)
    return row


def growing_delete_set(count: int = 2000, seed: int = 3) -> list[bytes]:
    """Small edits, each encoded as pycrdt's `get_update(state)` makes it: with every deletion
    made so far (so the delete set each update carries grows with the document's history)."""
    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    text = doc.get("design", type=Text)
    stream = []
    for _ in range(count):
        before = doc.get_state()
        if len(text) > 10 and rng.random() < 0.4:
            at = rng.randrange(len(text) - 3)
            del text[at : at + 2]
        else:
            text.insert(rng.randrange(len(text) + 1), rng.choice(WORDS) + " ")
        stream.append(doc.get_update(before))
    return stream


def up_to_date_step2(document: bytes, count: int = 300) -> Workload:
    """A peer holding all of `document` answers a replica that holds it too: no structs, the
    whole delete set (pycrdt encodes it; a stock Yjs client writes the same ranges)."""
    peer: Doc[Any] = Doc()
    peer.apply_update(document)
    holder = Replica("room")
    holder.apply_update(document, trusted=True)
    step2 = peer.get_update(holder.state_vector())
    return Workload("up-to-date peer's step 2", [step2] * count, setup=[document])


def workloads() -> list[Workload]:
    chosen = [Workload("agent-sized", agent_sized()), Workload("paragraphs (~2 KB)", paragraphs())]
    typed = keystrokes()  # the trace is required: a run without it would record half a table
    chosen.append(Workload("keystrokes (automerge-paper)", typed))
    whole = Replica("loader")
    for u in typed:
        whole.apply_update(u, trusted=True)
    document = whole.encode_update()
    chosen.append(Workload("whole document, one update", [document]))
    chosen.append(up_to_date_step2(document))
    chosen.append(Workload("growing delete set", growing_delete_set(), growth=True))
    return chosen


def measure_all(chosen: list[Workload]) -> list[dict[str, object]]:
    rows = []
    for i, work in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {work.name}: {len(work.updates)} updates ...", file=sys.stderr)
        rows.append(measure(work, 7 if len(work.updates) > 1 else 21))
    return rows


def pure_rows() -> list[dict[str, object]]:
    """The same workloads measured by a child process on the pure-Python hot path."""
    env = dict(os.environ, CRDTDOC_PURE_PYTHON="1")
    child = [sys.executable, "-m", "benchmarks.validation_overhead", "--rows-only"]
    out = subprocess.run(child, env=env, capture_output=True, text=True, check=True).stdout
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chosen = workloads()
    rows = measure_all(chosen)
    if args.rows_only:  # the pure-Python child: its rows, as JSON
        print(json.dumps(rows))
        return 0
    pure: list[dict[str, object]] = []
    if crdtdoc.hotpath.COMPILED:
        print("[+] the same on the pure-Python hot path (child process) ...", file=sys.stderr)
        pure = pure_rows()
        for row, slow in zip(rows, pure, strict=True):
            row["pure_replica_us_per_update"] = slow["replica_us_per_update"]
            row["pure_replica_over_raw"] = slow["replica_over_raw"]
            row["pure_parse_only_us_per_update"] = slow["parse_only_us_per_update"]
            if "replica_last_over_first_quarter" in slow:
                row["pure_last_over_first_quarter"] = slow["replica_last_over_first_quarter"]
    print("[+] causal buffer: reversed backlog ...", file=sys.stderr)
    backlog = backlog_reversed(chosen[2].updates if len(chosen) > 3 else chosen[0].updates)
    headline = [_headline(row, bool(pure)) for row in rows]
    headline.append(
        f"{backlog['workload']}: {backlog['reversed_s']} s "
        f"({backlog['reversed_over_in_order']}x in-order delivery)"
    )
    report = {
        "crdtdoc": crdtdoc.__version__,
        "hot_path": crdtdoc.hotpath.describe(),
        "peers": {"pycrdt": package_version("pycrdt")},
        "headline": headline,
        "rows": rows,
        "causal_buffer": backlog,
    }
    columns = [
        ("workload", "workload"),
        ("median_update_bytes", "bytes"),
        ("raw_pycrdt_us_per_update", "raw pycrdt µs"),
        ("replica_us_per_update", f"replica µs ({PATH})"),
        ("replica_over_raw", "ratio"),
        ("pure_replica_us_per_update", "replica µs (pure Python)"),
        ("pure_replica_over_raw", "ratio"),
        ("parse_only_us_per_update", "parse µs"),
        ("raw_last_over_first_quarter", "growth raw"),
        ("replica_last_over_first_quarter", f"growth {PATH}"),
        ("pure_last_over_first_quarter", "growth pure"),
    ]
    table = [
        "# What validation and causal ordering cost",
        "",
        "µs per update, median of 7 (21 for one update) repeats in one process; the pure-Python "
        "column from a child process with CRDTDOC_PURE_PYTHON=1. Growth: the last quarter's "
        "time over the first quarter's, for a workload whose updates grow.",
        "",
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(row.get(key, "-")) for key, _ in columns) + " |" for row in rows),
        "",
    ]
    save("validation_overhead", report, "\n".join(table))
    _plot(rows)
    print("\n".join(headline))
    print(f"written to {RESULTS.relative_to(ROOT.parent)}")
    return 0


def _headline(row: dict[str, object], pure: bool) -> str:
    said = f"{row['workload']}: the replica costs {row['replica_over_raw']}x raw pycrdt {PATH}"
    if not pure:
        return said
    share = float(str(row["replica_us_per_update"])) / float(str(row["pure_replica_us_per_update"]))
    return (
        f"{said}, {row['pure_replica_over_raw']}x on pure Python (compiled takes {share:.2f} "
        "of the pure path's time)"
    )


def _plot(rows: list[dict[str, object]]) -> None:
    """Bars: the replica's cost over raw pycrdt per workload, compiled and pure Python."""
    plt = pyplot()
    if plt is None:
        return
    names = [str(row["workload"]) for row in rows]
    compiled = [float(str(row["replica_over_raw"])) for row in rows]
    pure = [float(str(row.get("pure_replica_over_raw", "nan"))) for row in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    places = range(len(names))
    ax.bar([p - 0.2 for p in places], compiled, width=0.4, label=PATH)
    ax.bar([p + 0.2 for p in places], pure, width=0.4, label="pure Python")
    ax.axhline(1.5, color="grey", linestyle="--", linewidth=1, label="issue 19's target (1.5x)")
    ax.set_xticks(list(places), names, rotation=12, fontsize=8)
    ax.set_ylabel("replica time / raw pycrdt time")
    ax.set_title("Replica.apply_update over raw pycrdt, per update")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "validation_overhead.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

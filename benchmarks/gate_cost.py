"""What the semantic gate costs per update (issue 15): `Replica.apply_update` with and without it,
at the hub, against raw pycrdt and against the replica of the commit before the gate.

Variants, timed side by side in one process, interleaved, each on a fresh document:

- raw: pycrdt `Doc.apply_update`;
- trusted: `Replica.apply_update(data, trusted=True)`, today's apply path without the gate;
- gated: `Replica.apply_update(data)`, with the gate (`crdtdoc.semantics`, `crdtdoc.itemindex`);
- hub: the hub's per-update path without sockets: `parse_update(details=True)` as
  `Room.authorize` does, then the gated apply with `crdtdoc.server.access.judge_items` as the judge
  hook (as `Room._judge` does, with a writer that owns every client and no recorded artifact kinds);
- hub gate: only the hub's judging (`parse_update(details=True)`, `check_update`, `judge_items`),
  timed alone; the replica applies each update trusted, untimed, to keep its index current.

"Today's apply before the gate": the replica of commit 3275f5a (the commit before the gate),
checked out into a temporary git worktree, and this tree's replica, each run in its own
subprocess, alternating, on the same update bytes (each subprocess also times raw pycrdt).

Workloads:

- (a) 2,000 transaction-sized updates (a few words or a deletion each, ~45 B) from 4 writers who
  see each other's work, applied in order;
- (b) the whole automerge-paper document (259,778 edits, replayed in pycrdt) as one update: a
  room load or a first sync;
- (c) the first 20,000 keystrokes of automerge-paper, one update each from one writer, as a Yjs
  editor sends them: a growing document; each quarter is timed apart (last over first quarter).

Times are the measuring thread's CPU time (`time.thread_time`), not wall time: on a loaded
2-core machine wall time also counts waiting for a core. Figures are medians and bests of
repeats. Instructions (valgrind's callgrind) for workload (a): every mode runs in its own process
with PYTHONHASHSEED=0, less the instructions of a process that only imports and loads the
updates. The gate's pieces are also timed apart, and the gated apply is profiled (cProfile).

Run: `python -m benchmarks gate_cost` (2-4 minutes; `--quick` for a smoke run; `--new REV`
measures a commit, in a worktree, instead of the working tree). Needs git (for the worktrees)
and valgrind (else instructions are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import itertools
import json
import os
import pickle
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

OLD_COMMIT = "3275f5a"
"""The commit before the semantic gate (34259be added it)."""

VARIANTS = ["raw", "trusted", "gated", "hub", "hub gate"]
WORKLOADS = {
    "a": "transaction-sized (4 writers)",
    "b": "whole document, one update",
    "c": "keystrokes, growing document",
}
GROWING = {"c"}
"""Workloads timed by quarters, to see whether the cost per update grows with the document."""
WORDS = ["agent", "task", "spec", "design", "merge", "review", "version", "interface"]

# -- workloads ---------------------------------------------------------------------------------


def client_id(rng: random.Random) -> int:
    """A client id as Yjs draws them (a random uint32), from a seeded generator: the workloads'
    bytes (ids are varints in every item) are the same on every run."""
    return rng.getrandbits(32)


def transaction_sized(count: int = 2000, writers: int = 4, seed: int = 3) -> list[bytes]:
    """`count` small updates (a few words inserted, or a few characters deleted) made by
    `writers` replicas that apply each other's work now and then, in causal order."""
    from crdtdoc import Replica

    rng = random.Random(seed)
    replicas = [Replica(f"agent{i}", client_id=client_id(rng)) for i in range(writers)]
    log: list[bytes] = []
    for r in replicas:
        r.on_update(lambda u, local: log.append(u) if local else None)
    seen = [0] * writers
    while len(log) < count:
        i = rng.randrange(writers)
        replica = replicas[i]
        if rng.random() < 0.3:
            for u in log[seen[i] :]:
                replica.apply_update(u)
            seen[i] = len(log)
        doc = replica.document("notes")
        if rng.random() < 0.85 or len(doc) < 10:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 4)))
            doc.insert(rng.randint(0, len(doc)), words + " ")
        else:
            doc.delete(rng.randrange(len(doc) - 3), rng.randint(1, 3))
    return log[:count]


def trace_updates(
    path: Path, keystrokes: int, edits: int | None, seed: int = 4
) -> tuple[list[bytes], bytes]:
    """Replays the trace in pycrdt (one transaction per edit, as an editor makes them): the
    updates of its first `keystrokes` edits, and the document after `edits` edits (all: None)
    as one update."""
    from pycrdt import Doc, Text

    trace = json.loads(gzip.decompress(path.read_bytes()))
    txns = trace["txns"] if edits is None else trace["txns"][:edits]
    doc: Doc[Any] = Doc(client_id=client_id(random.Random(seed)))
    text = doc.get("paper", type=Text)
    log: list[bytes] = []
    subscription = doc.observe(lambda event: log.append(event.update))
    for n, txn in enumerate(txns, 1):
        with doc.transaction():
            for pos, deleted, inserted in txn["patches"]:
                if deleted:
                    del text[pos : pos + deleted]
                if inserted:
                    text.insert(pos, inserted)
        if n == keystrokes:
            doc.unobserve(subscription)
    return log[:keystrokes], doc.get_update()


# -- timing (also run in subprocesses against another commit's crdtdoc) -------------------------


CLOCK = time.thread_time
"""Every figure is CPU time of the measuring thread: on a loaded 2-core machine wall time also
counts the waits for a core (twice the CPU time, and varying 2-5x between repeats, when this was
written); the thread's CPU time varies by a few percent."""


def clock_cost(samples: int = 20_000) -> float:
    """Seconds one `CLOCK` reading adds to an interval (a system call), subtracted from
    intervals timed per update."""
    gaps = []
    for _ in range(samples):
        began = CLOCK()
        gaps.append(CLOCK() - began)
    return statistics.median(gaps)


def segments(count: int, parts: int = 4) -> list[tuple[int, int]]:
    """[start, end) bounds cutting `count` updates into `parts` near-equal runs (fewer when
    there are fewer updates)."""
    parts = max(1, min(parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def _hub_tools() -> tuple[Any, Any, Callable[..., Any], Callable[..., Any]]:
    """The hub's judging pieces: a writer owning every client, empty room facts, the semantic
    check and `judge_items` (imported here: the old commit has none of them)."""
    from crdtdoc.semantics import check_update
    from crdtdoc.server.access import RoomFacts, Writer, judge_items

    writer = Writer(identity=None, grant=None, owns=lambda client: True)
    return writer, RoomFacts(kinds={}, frozen=frozenset()), check_update, judge_items


def time_variant(variant: str, updates: list[bytes], parts: int = 4) -> list[float]:
    """Applies `updates` in order to a fresh document the way `variant` does; returns the
    seconds each segment of them took (see `segments`)."""
    from pycrdt import Doc

    from crdtdoc import Replica
    from crdtdoc.updates import parse_update

    bounds = segments(len(updates), parts)
    spent: list[float] = []
    gc.collect()
    if variant == "raw":
        doc: Doc[Any] = Doc()
        for start, end in bounds:
            began = CLOCK()
            for u in updates[start:end]:
                doc.apply_update(u)
            spent.append(CLOCK() - began)
        return spent
    replica = Replica("bench")
    if variant in ("gated", "replica", "trusted"):
        trusted = variant == "trusted"
        for start, end in bounds:
            began = CLOCK()
            if trusted:
                for u in updates[start:end]:
                    replica.apply_update(u, trusted=True)
            else:  # "replica": whatever the commit's default is (no gate before 34259be)
                for u in updates[start:end]:
                    replica.apply_update(u)
            spent.append(CLOCK() - began)
        return spent
    writer, facts, check_update, judge_items = _hub_tools()
    if variant == "hub":

        def judge(items: list[Any], locator: Any, state: dict[int, int], origin: object) -> None:
            judge_items(items, locator, state, writer, facts)

        replica.judge = judge
        for start, end in bounds:
            began = CLOCK()
            for u in updates[start:end]:
                parsed = parse_update(u, details=True)
                replica.apply_update(u, parsed=parsed, origin=writer)
            spent.append(CLOCK() - began)
        return spent
    if variant != "hub gate":
        raise ValueError(f"unknown variant {variant!r}")
    index = replica.item_index()  # built now (empty), kept current by the trusted applies
    cost = clock_cost()
    for start, end in bounds:
        total = 0.0
        for u in updates[start:end]:
            clocks = replica.version().clocks
            began = CLOCK()
            parsed = parse_update(u, details=True)
            items = parsed.items or []
            before = {client: clocks.get(client, 0) for client in parsed.structs}
            locator = check_update(index, items, before)
            judge_items(items, locator, before, writer, facts)
            total += CLOCK() - began - cost
            replica.apply_update(u, parsed=parsed, trusted=True)
        spent.append(total)
    return spent


def run_rounds(
    workloads: dict[str, list[bytes]],
    variants: list[str],
    repeats: int,
    step: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[list[float]]]]:
    """workload -> variant -> one list of segment seconds per repeat (quarters for the growing
    workload, else one); the variants take turns within each repeat, so machine noise hits them
    alike."""
    runs: dict[str, dict[str, list[list[float]]]] = {
        w: {v: [] for v in variants} for w in workloads
    }
    for name, updates in workloads.items():
        parts = 4 if name in GROWING else 1
        for _ in range(repeats):
            for variant in variants:
                runs[name][variant].append(time_variant(variant, updates, parts))
            if step is not None:
                step(f"({name}) repeat done")
    return runs


def worker(argv: list[str]) -> int:
    """In a subprocess: times `variants` on the pickled workloads; prints JSON (with where
    crdtdoc was imported from, so the caller can check it got the tree it meant)."""
    path, repeats, *variants = argv
    import crdtdoc

    workloads: dict[str, list[bytes]] = pickle.loads(Path(path).read_bytes())
    runs = run_rounds(workloads, variants, int(repeats))
    print(json.dumps({"crdtdoc": crdtdoc.__file__, "runs": runs}))
    return 0


def measure(
    workloads: dict[str, list[bytes]], repeats: int, step: Callable[[str], None]
) -> dict[str, Any]:
    """Everything timed in one process: the variants interleaved, the gate's pieces, and a
    profile of the gated apply; with where crdtdoc was imported from."""
    import crdtdoc

    runs = run_rounds(workloads, VARIANTS, repeats, step)
    pieces: dict[str, list[dict[str, float]]] = {w: [] for w in workloads}
    for _ in range(repeats):
        for w, u in workloads.items():
            pieces[w].append(gate_breakdown(u))
    step("gate's pieces timed")
    profiles = {w: profile_gate(u) for w, u in workloads.items()}
    step("gated apply profiled")
    return {"crdtdoc": crdtdoc.__file__, "runs": runs, "pieces": pieces, "profiles": profiles}


def measure_worker(argv: list[str]) -> int:
    """In a subprocess (`--new REV`): `measure` on the pickled workloads; prints JSON."""
    path, repeats = argv
    workloads: dict[str, list[bytes]] = pickle.loads(Path(path).read_bytes())

    def step(what: str) -> None:
        print(f"gate_cost (subprocess): {what}", file=sys.stderr, flush=True)

    print(json.dumps(measure(workloads, int(repeats), step)))
    return 0


def instructions_worker(argv: list[str]) -> int:
    """Under callgrind: applies the pickled updates once the way `mode` does ("none": only
    imports and loads them, the baseline)."""
    path, mode = argv
    import pycrdt  # noqa: F401

    import crdtdoc  # noqa: F401  (every mode imports the same modules)

    with contextlib.suppress(ImportError):  # absent before the gate
        _hub_tools()
    updates: list[bytes] = pickle.loads(Path(path).read_bytes())
    if mode != "none":
        time_variant(mode, updates, parts=1)
    return 0


def _child(
    tree: Path,
    entry: str,
    args: list[str],
    prefix: list[str] | None = None,
    show_stderr: bool = False,
) -> str:
    """Runs `entry` of this file in a fresh interpreter whose crdtdoc is `tree`'s; its stdout
    (its stderr shows when `show_stderr`, as progress)."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('gate_cost_child', {str(__file__)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"sys.exit(module.{entry}(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as cwd:  # nothing on sys.path[0] shadows a module
        out = subprocess.run(
            [*(prefix or []), sys.executable, "-c", code, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None if show_stderr else subprocess.PIPE,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"{entry} in {tree} failed:\n{(out.stderr or '')[-3000:]}")
    return out.stdout


def tree_state(repo: Path) -> str:
    """The commit `repo` has checked out, and whether crdtdoc/ or server/ differ from it."""
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "crdtdoc", "server"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head or '?'}{' with uncommitted changes to crdtdoc/server' if dirty else ''}"


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """`commit` checked out (detached) into a temporary git worktree, removed afterwards."""
    repo = Path(__file__).resolve().parent.parent
    path = Path(tempfile.mkdtemp(prefix="gate_cost_old_"))
    path.rmdir()
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(path), commit],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False
        )
        shutil.rmtree(path, ignore_errors=True)


def old_and_new(
    data: Path, old: Path, new: Path, rounds: int, repeats: int, step: Callable[[str], None]
) -> dict[str, dict[str, dict[str, list[list[float]]]]]:
    """Alternating subprocesses: the old tree's replica and this tree's (gated and trusted),
    each beside raw pycrdt. Returns side ("old"/"new") -> workload -> variant -> runs."""
    merged: dict[str, dict[str, dict[str, list[list[float]]]]] = {"old": {}, "new": {}}
    plan = {"old": (old, ["raw", "replica"]), "new": (new, ["raw", "trusted", "replica"])}
    for _ in range(rounds):
        for side, (tree, variants) in plan.items():
            result = json.loads(_child(tree, "worker", [str(data), str(repeats), *variants]))
            if not result["crdtdoc"].startswith(str(tree)):
                raise RuntimeError(f"{side}: crdtdoc came from {result['crdtdoc']}, not {tree}")
            for workload, by_variant in result["runs"].items():
                for variant, runs in by_variant.items():
                    merged[side].setdefault(workload, {}).setdefault(variant, []).extend(runs)
            step(f"{side} subprocess done")
    return merged


# -- instructions ------------------------------------------------------------------------------

INSTRUCTION_MODES = [("new", "none"), ("new", "raw"), ("new", "trusted"), ("new", "gated")]
INSTRUCTION_MODES += [("new", "hub"), ("old", "none"), ("old", "replica")]


def callgrind_total(text: str) -> int:
    """The instruction count a callgrind output file records (its `summary:` or `totals:`)."""
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if match is None:
        raise ValueError("no summary or totals line in the callgrind output")
    return int(match.group(1))


def count_instructions(
    data: Path, trees: dict[str, Path], step: Callable[[str], None]
) -> dict[str, int]:
    """Instructions of each (tree, mode) of `INSTRUCTION_MODES`, two processes at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def one(side: str, mode: str) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            _child(trees[side], "instructions_worker", [str(data), mode], prefix)
            total = callgrind_total(out.read_text(errors="replace"))
        step(f"callgrind {side} {mode}: {total:,}")
        return total

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {f"{s} {m}": pool.submit(one, s, m) for s, m in INSTRUCTION_MODES}
        return {key: future.result() for key, future in futures.items()}


def instruction_table(counts: dict[str, int], updates: int) -> dict[str, dict[str, float]]:
    """Per mode: instructions for the updates (baseline process subtracted) and per update."""
    table: dict[str, dict[str, float]] = {}
    for key, total in counts.items():
        side, mode = key.split(" ", 1)
        if mode == "none":
            continue
        spent = total - counts[f"{side} none"]
        table[key] = {"instructions": spent, "per_update": round(spent / updates)}
    return table


# -- where the gate's time goes ---------------------------------------------------------------

BREAKDOWN = ["parse", "parse with details", "check_update", "ItemIndex.add", "judge_items"]
"""The pieces timed by `gate_breakdown`: every apply parses (trusted too); the gate parses again
with details, checks, and keeps the item index; the hub also judges."""
GATE_PIECES = ["parse with details", "check_update", "ItemIndex.add"]
"""What the replica's gate adds to a trusted apply (a fresh trusted replica keeps no index)."""


def gate_breakdown(updates: list[bytes]) -> dict[str, float]:
    """Seconds each piece of the gate takes over `updates` applied in order, timed apart with no
    profiler (the index is kept beside; no document is needed to judge in-order updates)."""
    from crdtdoc.itemindex import ItemIndex
    from crdtdoc.updates import parse_update

    writer, facts, check_update, judge_items = _hub_tools()
    index = ItemIndex()
    state: dict[int, int] = {}
    spent = dict.fromkeys(BREAKDOWN, 0.0)
    clock = CLOCK
    cost = clock_cost()
    gc.collect()
    for u in updates:
        t0 = clock()
        parse_update(u)
        t1 = clock()
        parsed = parse_update(u, details=True)
        t2 = clock()
        items = parsed.items or []
        before = {client: state.get(client, 0) for client in parsed.structs}
        locator = check_update(index, items, before)
        t3 = clock()
        judge_items(items, locator, before, writer, facts)
        t4 = clock()
        index.add(items, before)
        t5 = clock()
        for client, structs in parsed.structs.items():
            state[client] = max(state.get(client, 0), structs.end)
        spent["parse"] += t1 - t0 - cost
        spent["parse with details"] += t2 - t1 - cost
        spent["check_update"] += t3 - t2 - cost
        spent["judge_items"] += t4 - t3 - cost
        spent["ItemIndex.add"] += t5 - t4 - cost
    return spent


# -- profile -----------------------------------------------------------------------------------


def profile_gate(updates: list[bytes], top: int = 12) -> dict[str, Any]:
    """cProfile of `Replica.apply_update` with the gate: the top functions by own time, and the
    cumulative time of the gate's parts (share of the whole apply)."""
    import cProfile
    import pstats

    from crdtdoc import Replica

    replica = Replica("bench")
    profiler = cProfile.Profile()
    profiler.enable()
    for u in updates:
        replica.apply_update(u)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    rows = []
    for (file, line, func), (_, calls, tt, ct, _) in raw.items():
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        rows.append({"function": f"{func} ({where})", "calls": calls, "own_s": tt, "cum_s": ct})
    rows.sort(key=lambda r: -float(r["own_s"]))
    parts = {
        "check_update": ("semantics.py", "check_update"),
        "ItemIndex.add": ("itemindex.py", "add"),
        "parse_update": ("updates.py", "parse_update"),
        "pycrdt Doc.apply_update": ("_doc.py", "apply_update"),
    }
    phases = {}
    for label, (filename, func) in parts.items():
        cum = sum(
            ct
            for (f, _, fn), (_, _, _, ct, _) in raw.items()
            if f.endswith(filename) and fn == func
        )
        phases[label] = {"cum_s": round(cum, 4), "share": round(cum / total, 3) if total else 0}
    return {
        "total_s": round(total, 4),
        "phases": phases,
        "top": [
            {**r, "own_s": round(float(r["own_s"]), 4), "cum_s": round(float(r["cum_s"]), 4)}
            for r in rows[:top]
        ],
    }


# -- summaries ---------------------------------------------------------------------------------


def us_per_update(
    runs: list[list[float]], count: int, part: slice = slice(None)
) -> dict[str, float]:
    """Best and median over repeats of µs per update (of the segments `part` selects)."""
    per_run = []
    for segs in runs:
        chosen = segs[part]
        share = count * len(chosen) / len(segs)
        per_run.append(sum(chosen) / share * 1e6)
    return {"best": round(min(per_run), 2), "median": round(statistics.median(per_run), 2)}


def summarize(
    runs: dict[str, dict[str, list[list[float]]]], counts: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """workload -> variant -> best/median µs per update (whole run, first and last quarter)."""
    summary: dict[str, dict[str, Any]] = {}
    for workload, by_variant in runs.items():
        summary[workload] = {}
        for variant, variant_runs in by_variant.items():
            row: dict[str, Any] = us_per_update(variant_runs, counts[workload])
            if len(variant_runs[0]) == 4:
                row["first_quarter"] = us_per_update(variant_runs, counts[workload], slice(0, 1))
                row["last_quarter"] = us_per_update(variant_runs, counts[workload], slice(3, 4))
            summary[workload][variant] = row
    return summary


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def ratios(summary: dict[str, Any], sides: dict[str, Any]) -> dict[str, Any]:
    """Per workload, from medians (and, as `..._best`, from bests): gate/trusted, new/raw,
    hub/trusted, new/old (subprocesses), and for a growing workload last over first quarter."""
    out: dict[str, Any] = {}
    for workload, row in summary.items():
        entry: dict[str, Any] = {}
        for stat, suffix in (("median", ""), ("best", "_best")):
            at = {v: r[stat] for v, r in row.items()}
            entry |= {
                f"gated_over_trusted{suffix}": ratio(at["gated"], at["trusted"]),
                f"gate_us{suffix}": round(at["gated"] - at["trusted"], 2),
                f"gated_over_raw{suffix}": ratio(at["gated"], at["raw"]),
                f"hub_over_trusted{suffix}": ratio(at["hub"], at["trusted"]),
                f"hub_gate_over_trusted{suffix}": ratio(at["hub gate"], at["trusted"]),
            }
            old = sides.get("old", {}).get(workload)
            new = sides.get("new", {}).get(workload)
            if old and new:
                entry[f"new_over_old{suffix}"] = ratio(new["replica"][stat], old["replica"][stat])
                entry[f"new_trusted_over_old{suffix}"] = ratio(
                    new["trusted"][stat], old["replica"][stat]
                )
        if "first_quarter" in row["gated"]:
            growth = {}
            for variant in ("raw", "trusted", "gated", "hub gate"):
                first = row[variant]["first_quarter"]["median"]
                last = row[variant]["last_quarter"]["median"]
                growth[variant] = ratio(last, first)
            gate_first = row["gated"]["first_quarter"]["median"]
            gate_first -= row["trusted"]["first_quarter"]["median"]
            gate_last = row["gated"]["last_quarter"]["median"]
            gate_last -= row["trusted"]["last_quarter"]["median"]
            growth["gate_us_first_quarter"] = round(gate_first, 2)
            growth["gate_us_last_quarter"] = round(gate_last, 2)
            growth["gate_us"] = ratio(gate_last, gate_first)
            entry["last_over_first_quarter"] = growth
        out[workload] = entry
    return out


def markdown(
    summary: dict[str, Any],
    sides: dict[str, Any],
    derived: dict[str, Any],
    meta: dict[str, Any],
    instructions: dict[str, dict[str, float]] | None,
    profiles: dict[str, Any],
    breakdown: dict[str, dict[str, dict[str, float]]],
) -> str:
    lines = [
        "# The semantic gate's cost",
        "",
        f"CPU µs per update (the thread's CPU time), median (best) of {meta['repeats']} "
        "interleaved repeats in one process, each on a fresh document.",
        "",
        "| workload | updates | median bytes | raw pycrdt | trusted | gated | hub path "
        "| hub gate only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, row in summary.items():
        cells = [f"{row[v]['median']} ({row[v]['best']})" for v in VARIANTS]
        lines.append(
            f"| ({workload}) {WORKLOADS[workload]} | {meta['counts'][workload]:,} "
            f"| {meta['median_bytes'][workload]:,} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "trusted: `apply_update(data, trusted=True)` (no gate; a fresh replica then keeps no item "
        "index); gated: `apply_update(data)`; hub path: `parse_update(details=True)` + the gated "
        "apply of those parsed bytes with `judge_items` as judge; hub gate only: that parse + "
        "`check_update` + `judge_items`, the apply untimed.",
        "",
        "## Ratios: of medians (of bests)",
        "",
        f"new/old: this tree's ({meta['new_tree']}) `apply_update(data)` over commit "
        f"{meta['old_commit']}'s (before the gate), from {meta['rounds']} alternating pairs of "
        f"subprocesses of {meta['sub_repeats']} repeats each.",
        "",
        "| workload | gate µs (gated - trusted) | gated/trusted | hub path/trusted "
        "| hub gate only/trusted | gated/raw | new/old | new trusted/old |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in summary:
        d = derived[workload]
        keys = ["gate_us", "gated_over_trusted", "hub_over_trusted", "hub_gate_over_trusted"]
        keys += ["gated_over_raw", "new_over_old", "new_trusted_over_old"]
        cells = [f"{d.get(k, '-')} ({d.get(k + '_best', '-')})" for k in keys]
        lines.append(f"| ({workload}) | " + " | ".join(cells) + " |")
    if sides.get("new"):
        lines += ["", "## Old and new replica, each in its subprocess beside raw pycrdt", ""]
        lines += ["| workload | side | raw pycrdt | trusted | apply_update | over raw |"]
        lines += ["|---|---|---|---|---|---|"]
        for workload in summary:
            for side in ("old", "new"):
                row = sides[side].get(workload, {})
                if not row:
                    continue
                trusted = row.get("trusted", {}).get("median", "-")
                lines.append(
                    f"| ({workload}) | {side} | {row['raw']['median']} | {trusted} "
                    f"| {row['replica']['median']} "
                    f"| {ratio(row['replica']['median'], row['raw']['median'])} |"
                )
    growth = {
        w: d["last_over_first_quarter"]
        for w, d in derived.items()
        if "last_over_first_quarter" in d
    }
    if growth:
        lines += ["", "## Growth: last quarter over first quarter (median µs per update)", ""]
        lines += ["| workload | variant | first quarter | last quarter | last/first |"]
        lines += ["|---|---|---|---|---|"]
        for workload, g in growth.items():
            for variant in ("raw", "trusted", "gated", "hub gate"):
                row = summary[workload][variant]
                lines.append(
                    f"| ({workload}) | {variant} | {row['first_quarter']['median']} "
                    f"| {row['last_quarter']['median']} | {g[variant]} |"
                )
            lines.append(
                f"| ({workload}) | gate (gated - trusted) | {g['gate_us_first_quarter']} "
                f"| {g['gate_us_last_quarter']} | {g['gate_us']} |"
            )
    if instructions:
        lines += [
            "",
            f"## Instructions (callgrind), workload (a), {meta['counts']['a']:,} updates",
        ]
        lines += ["", "| mode | instructions | per update | over trusted |", "|---|---|---|---|"]
        trusted = instructions.get("new trusted", {}).get("instructions", 0)
        for key, row in instructions.items():
            lines.append(
                f"| {key} | {int(row['instructions']):,} | {int(row['per_update']):,} "
                f"| {ratio(row['instructions'], trusted)} |"
            )
        gated = instructions.get("new gated", {}).get("instructions", 0)
        old = instructions.get("old replica", {}).get("instructions", 0)
        lines += [
            "",
            f"new gated over old replica: {ratio(gated, old)}x; each mode in its own process "
            "(PYTHONHASHSEED=0), less a process that only imports and loads the updates.",
        ]
    if breakdown:
        lines += ["", "## Where the gate's time goes: its pieces timed apart (µs per update)", ""]
        lines += [
            "Median (best) over repeats, no profiler. Every apply parses (trusted too); the gate "
            "adds the parse with details, `check_update` and `ItemIndex.add`; the hub adds "
            "`judge_items` (and parses with details once, so its replica does not parse again).",
            "",
        ]
        lines += ["| workload | " + " | ".join(BREAKDOWN) + " | gate's pieces | measured gate |"]
        lines += ["|---|" + "---|" * (len(BREAKDOWN) + 2)]
        for workload, pieces in breakdown.items():
            gate = {
                stat: round(sum(pieces[k][stat] for k in GATE_PIECES), 2)
                for stat in ("median", "best")
            }
            d = derived[workload]
            lines.append(
                f"| ({workload}) | "
                + " | ".join(f"{pieces[k]['median']} ({pieces[k]['best']})" for k in BREAKDOWN)
                + f" | {gate['median']} ({gate['best']}) | {d['gate_us']} ({d['gate_us_best']}) |"
            )
    for workload, prof in profiles.items():
        lines += [
            "",
            f"## Where the gated apply's time goes, workload ({workload}) (cProfile)",
            "",
        ]
        lines.append(
            "Cumulative, share of the profiled apply: "
            + ", ".join(f"{k} {v['cum_s']} s ({v['share']:.0%})" for k, v in prof["phases"].items())
            + f"; total {prof['total_s']} s."
        )
        lines += ["", "| function | calls | own s | cumulative s |", "|---|---|---|---|"]
        for r in prof["top"]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['own_s']} | {r['cum_s']} |")
    return "\n".join(lines) + "\n"


COLORS = {"raw": "#888888", "trusted": "#4c72b0", "gated": "#c44e52", "hub": "#dd8452"}
COLORS |= {"hub gate": "#937860", "old": "#55a868", "new": "#c44e52"}


def plot(summary: dict[str, Any], sides: dict[str, Any], path: Path) -> bool:
    """Bars of median µs per update, one panel per workload; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot")
        return False
    growing = [w for w, row in summary.items() if "first_quarter" in row["gated"]]
    panels = len(summary) + len(growing)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4))
    axes = axes if panels > 1 else [axes]
    for ax, workload in zip(axes[len(summary) :], growing, strict=True):
        for variant in ("raw", "trusted", "gated", "hub gate"):
            row = summary[workload][variant]
            ax.plot(
                ["first", "last"],
                [row["first_quarter"]["median"], row["last_quarter"]["median"]],
                marker="o",
                label=variant,
                color=COLORS[variant],
            )
        ax.set_title(f"({workload}) by quarter of the updates", fontsize=10)
        ax.set_ylabel("CPU µs per update (median)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    for ax, (workload, row) in zip(axes, summary.items(), strict=False):
        labels = list(VARIANTS)
        values = [row[v]["median"] for v in VARIANTS]
        for side in ("old", "new"):
            sub = sides.get(side, {}).get(workload, {}).get("replica")
            if sub:
                labels.append(f"{side} (subproc.)")
                values.append(sub["median"])
        colors = [COLORS[label.split(" ")[0] if "subproc" in label else label] for label in labels]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"({workload}) {WORKLOADS[workload]}", fontsize=10)
        ax.set_ylabel("CPU µs per update (median)")
    fig.suptitle("The semantic gate's cost per update (2 shared cores)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    from benchmarks.common import Progress, package_version, results_dir, save, trace_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    parser.add_argument("--trace", default=None, help="the trace file (.json.gz)")
    parser.add_argument("--old", default=OLD_COMMIT, help="the commit before the gate")
    parser.add_argument(
        "--new",
        default=None,
        metavar="REV",
        help="measure this commit (in a worktree) instead of the working tree",
    )
    parser.add_argument("--no-old", action="store_true", help="skip the old-commit subprocesses")
    parser.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    args = parser.parse_args()
    quick = args.quick
    repeats, rounds, sub_repeats = (2, 1, 1) if quick else (7, 3, 3)
    sizes = {"a": 300 if quick else 2000, "c": 2000 if quick else 20000}
    callgrind = not args.no_callgrind and shutil.which("valgrind") is not None
    if not args.no_callgrind and not callgrind:
        print("valgrind not found (apt-get install valgrind): no instruction counts")
    path = trace_path(args.trace)
    steps = 3 + (1 if args.new else len(WORKLOADS) * repeats + 2)
    steps += (0 if args.no_old else 2 * rounds) + (len(INSTRUCTION_MODES) if callgrind else 0)
    progress = Progress(steps, "gate_cost")
    workloads = {"a": transaction_sized(sizes["a"])}
    progress.step(f"(a) {len(workloads['a'])} updates made")
    keystrokes, whole = trace_updates(path, sizes["c"], 30000 if quick else None)
    workloads["b"], workloads["c"] = [whole], keystrokes
    progress.step(f"(b) one update of {len(whole):,} B; (c) {len(keystrokes)} keystrokes")
    counts = {w: len(u) for w, u in workloads.items()}
    median_bytes = {w: sorted(len(x) for x in u)[len(u) // 2] for w, u in workloads.items()}
    sides: dict[str, Any] = {}
    instructions: dict[str, dict[str, float]] | None = None
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        data = Path(tmp) / "workloads.pickle"
        data.write_bytes(pickle.dumps(workloads))
        a_only = Path(tmp) / "a.pickle"
        a_only.write_bytes(pickle.dumps(workloads["a"]))
        trees = {"new": Path(__file__).resolve().parent.parent}
        if args.new:
            trees["new"] = stack.enter_context(worktree(args.new))
        if not args.no_old or callgrind:
            trees["old"] = stack.enter_context(worktree(args.old))
        progress.step("worktrees of " + " and ".join(filter(None, [args.new, args.old])))
        new_tree = tree_state(trees["new"])
        if args.new:
            out = _child(trees["new"], "measure_worker", [str(data), str(repeats)], None, True)
            measured = json.loads(out)
            if not measured["crdtdoc"].startswith(str(trees["new"])):
                raise RuntimeError(f"crdtdoc came from {measured['crdtdoc']}, not {trees['new']}")
            progress.step(f"measured {args.new} in one subprocess")
        else:
            measured = measure(workloads, repeats, progress.step)
        if not args.no_old:
            raw_sides = old_and_new(
                data, trees["old"], trees["new"], rounds, sub_repeats, progress.step
            )
            sides = {side: summarize(r, counts) for side, r in raw_sides.items()}
        if callgrind:
            instructions = instruction_table(
                count_instructions(a_only, trees, progress.step), counts["a"]
            )
    runs, pieces, profiles = measured["runs"], measured["pieces"], measured["profiles"]
    summary = summarize(runs, counts)
    breakdown = {
        w: {
            k: {
                "median": round(statistics.median(r[k] for r in rs) / counts[w] * 1e6, 2),
                "best": round(min(r[k] for r in rs) / counts[w] * 1e6, 2),
            }
            for k in BREAKDOWN
        }
        for w, rs in pieces.items()
    }
    derived = ratios(summary, sides)
    meta = {
        "new_tree": new_tree,
        "old_commit": args.old,
        "repeats": repeats,
        "rounds": rounds,
        "sub_repeats": sub_repeats,
        "counts": counts,
        "median_bytes": median_bytes,
    }
    table = markdown(summary, sides, derived, meta, instructions, profiles, breakdown)
    folder = results_dir(quick)
    plotted = plot(summary, sides, folder / "gate_cost.png")
    headline = _headline(summary, derived, instructions, breakdown)
    save(
        "gate_cost",
        {
            "quick": quick,
            "peers": {"crdtdoc": package_version("crdtdoc"), "pycrdt": package_version("pycrdt")},
            "headline": headline,
            **meta,
            "us_per_update": summary,
            "subprocesses": sides,
            "ratios": derived,
            "instructions": instructions,
            "gate_pieces_us_per_update": breakdown,
            "profiles": profiles,
            "plots": ["gate_cost.png"] if plotted else [],
            "runs": runs,
        },
        table,
        folder,
    )
    print(table)


def _headline(
    summary: dict[str, Any],
    derived: dict[str, Any],
    instructions: dict[str, dict[str, float]] | None,
    breakdown: dict[str, dict[str, dict[str, float]]],
) -> list[str]:
    lines = []
    for workload in summary:
        d = derived[workload]
        sentence = (
            f"({workload}) {WORKLOADS[workload]}: the gate adds {d['gate_us']:,.1f} CPU µs per "
            f"update; the gated apply takes {d['gated_over_trusted']}x the trusted one "
            f"({d['gated_over_raw']}x raw pycrdt)"
        )
        if "new_over_old" in d:
            sentence += f" and {d['new_over_old']}x the replica before the gate"
        lines.append(sentence + ".")
    growth = derived.get("c", {}).get("last_over_first_quarter")
    if growth:
        lines.append(
            f"Growing document (c): the gate's µs per update in the last quarter are "
            f"{growth['gate_us']}x those of the first ({growth['gate_us_first_quarter']} -> "
            f"{growth['gate_us_last_quarter']} µs)."
        )
    if instructions and "new gated" in instructions and "new trusted" in instructions:
        gated, trusted = instructions["new gated"], instructions["new trusted"]
        sentence = (
            f"Instructions, workload (a): {int(gated['per_update']):,} per update with the gate, "
            f"{int(trusted['per_update']):,} without "
            f"({ratio(gated['instructions'], trusted['instructions'])}x)"
        )
        old = instructions.get("old replica")
        if old:
            sentence += f", {int(old['per_update']):,} before the gate"
        lines.append(sentence + ".")
    pieces = breakdown.get("a")
    if pieces:
        lines.append(
            "Where it goes, (a): "
            + ", ".join(f"{k} {pieces[k]['median']} µs" for k in GATE_PIECES)
            + f" (every apply's own parse: {pieces['parse']['median']} µs; the replica parses "
            "each untrusted update twice, the hub once)."
        )
    return lines


if __name__ == "__main__":
    main()

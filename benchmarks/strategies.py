"""The classic ways to share a resource, on one agent workload, side by side.

The workload: N agents each do T tasks. A task reads one field of a shared artifact (a list of
notes), "thinks" (waits `think` seconds, as an agent waits for its model), then writes the field
back with its own note added. With probability `conflict` a task works on the one hot field,
otherwise on a field nobody else touches, so `conflict` sets how often agents' work overlaps. Every
strategy runs the same seeded sequence of tasks; the correct outcome keeps every note.

Strategies, all on real services on loopback:

- lww: a PostgreSQL row per field; read, think, write (no check). Last writer wins.
- occ: read the value and its version, think, write only if the version is unchanged; otherwise
  read again and think again (optimistic concurrency with retry).
- lock: `SELECT ... FOR UPDATE` in a transaction held while thinking (pessimistic lock).
- queue: agents read and think freely, then hand their note to one writer task that applies
  changes one at a time (single writer with a queue).
- crdtdoc: each agent holds a replica connected to a crdtdoc hub (`crdtdoc serve` on SQLite, its
  own process, as PostgreSQL is for the others); the note is appended to the field's task notes,
  a CRDT array, so concurrent appends merge.
- crdtdoc-guarded: crdtdoc with a guarded commit (`expect` = the version read, `on` = the
  artifact), retried on `Conflict`: for work that must be based on the latest state.
- crdtdoc-lease: crdtdoc's lock: a lease on the field (waiting first come, first served), then the
  same guarded commit, fenced by the lease; a retry happens only when the previous holder's note
  has not reached this replica yet.

Measured per strategy: notes lost (written but absent at the end), wasted think time (thinking whose
result was thrown away: retries, lost writes), stale decisions (notes that landed after notes
their author had not read: the work was based on an outdated view; zero by construction for occ,
lock and crdtdoc-guarded), throughput (tasks per second), and latency from the end of thinking
until the write is visible to the other agents, p50 and p99 (lost writes are never visible and
are not in the latency figures).

Run: `python -m benchmarks strategies` (about 5 minutes; `--quick` for a smaller grid).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import crdtdoc
from benchmarks.common import RESULTS, Progress, package_version, results_dir, save
from benchmarks.processes import PG_ADMIN, hub_process, postgres_database

STRATEGIES = ["lww", "occ", "lock", "queue", "crdtdoc", "crdtdoc-guarded", "crdtdoc-lease"]
HOT = "hot"


@dataclass(frozen=True)
class Task:
    agent: int
    index: int
    field: str

    @property
    def note(self) -> str:
        return f"<a{self.agent}-t{self.index}>"  # delimited: no note is part of another


@dataclass
class Outcome:
    """What one strategy did with one workload."""

    tasks: int = 0
    thinks: int = 0  # think periods spent (retries count again)
    wasted_thinks: int = 0  # think periods whose result was thrown away
    lost: int = 0
    stale: int = 0
    seconds: float = 0.0
    seen: dict[str, int] = field(default_factory=dict)  # note -> notes its author read first
    latencies: list[float] = field(default_factory=list)

    def judge(self, final: dict[str, list[str]], expected: set[str]) -> None:
        """Counts lost notes and stale decisions from each field's final list of notes."""
        present = {note for notes in final.values() for note in notes}
        self.lost = len(expected - present)
        self.stale = sum(
            1
            for notes in final.values()
            for index, note in enumerate(notes)
            if index > self.seen.get(note, index)
        )

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies) or [float("nan")]
        return {
            "tasks": self.tasks,
            "lost": self.lost,
            "lost_pct": round(100 * self.lost / self.tasks, 1),
            "stale_pct": round(100 * self.stale / self.tasks, 1),
            "wasted_think_pct": round(100 * self.wasted_thinks / max(self.thinks, 1), 1),
            "retries": self.thinks - self.tasks,
            "tasks_per_s": round(self.tasks / self.seconds, 2),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, 1),
        }


def workload(agents: int, tasks: int, conflict: float, seed: int) -> list[list[Task]]:
    rng = random.Random(seed)
    return [
        [Task(a, t, HOT if rng.random() < conflict else f"f{a}-{t}") for t in range(tasks)]
        for a in range(agents)
    ]


def fields_of(plan: list[list[Task]]) -> list[str]:
    return sorted({HOT} | {t.field for tasks in plan for t in tasks})


# -- PostgreSQL strategies ---------------------------------------------------------------------


async def run_postgres(strategy: str, plan: list[list[Task]], think: float) -> Outcome:
    outcome = Outcome(tasks=sum(len(t) for t in plan))
    with postgres_database(PG_ADMIN, prefix="crdtdoc_strat") as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            await db.execute(
                "CREATE TABLE artifact (field text PRIMARY KEY, notes jsonb NOT NULL, "
                "version int NOT NULL)"
            )
            async with db.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO artifact VALUES (%s, '[]', 0)", [(f,) for f in fields_of(plan)]
                )
        conns = [
            await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(len(plan))
        ]
        queue: asyncio.Queue[tuple[str, str, float] | None] = asyncio.Queue()

        async def writer() -> None:  # the single writer of the queue strategy
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
                while (item := await queue.get()) is not None:
                    name, note, decided = item
                    async with db.transaction():
                        cur = await db.execute(
                            "SELECT notes FROM artifact WHERE field = %s FOR UPDATE", (name,)
                        )
                        row = await cur.fetchone()
                        notes = [*row[0], note] if row else [note]
                        await db.execute(
                            "UPDATE artifact SET notes = %s, version = version + 1 "
                            "WHERE field = %s",
                            (json.dumps(notes), name),
                        )
                    outcome.latencies.append(time.perf_counter() - decided)

        async def agent(db: psycopg.AsyncConnection[Any], tasks: list[Task]) -> None:
            for task in tasks:
                if strategy == "lock":
                    async with db.transaction():
                        cur = await db.execute(
                            "SELECT notes FROM artifact WHERE field = %s FOR UPDATE",
                            (task.field,),
                        )
                        row = await cur.fetchone()
                        outcome.seen[task.note] = len(row[0]) if row else 0
                        outcome.thinks += 1
                        await asyncio.sleep(think)
                        decided = time.perf_counter()
                        await db.execute(
                            "UPDATE artifact SET notes = %s WHERE field = %s",
                            (json.dumps([*(row[0] if row else []), task.note]), task.field),
                        )
                    outcome.latencies.append(time.perf_counter() - decided)
                    continue
                first_decision: float | None = None
                while True:
                    cur = await db.execute(
                        "SELECT notes, version FROM artifact WHERE field = %s", (task.field,)
                    )
                    row = await cur.fetchone()
                    notes, version = (row[0], row[1]) if row else ([], 0)
                    outcome.seen[task.note] = len(notes)
                    outcome.thinks += 1
                    await asyncio.sleep(think)
                    decided = time.perf_counter()
                    first_decision = first_decision or decided
                    if strategy == "queue":
                        queue.put_nowait((task.field, task.note, decided))
                        break
                    new = json.dumps([*notes, task.note])
                    if strategy == "lww":
                        await db.execute(
                            "UPDATE artifact SET notes = %s, version = version + 1 "
                            "WHERE field = %s",
                            (new, task.field),
                        )
                        outcome.latencies.append(time.perf_counter() - decided)
                        break
                    cur = await db.execute(  # occ: only if nobody wrote since the read
                        "UPDATE artifact SET notes = %s, version = version + 1 "
                        "WHERE field = %s AND version = %s",
                        (new, task.field, version),
                    )
                    if cur.rowcount == 1:
                        outcome.latencies.append(time.perf_counter() - first_decision)
                        break
                    outcome.wasted_thinks += 1  # somebody else won: think again on fresh data

        started = time.perf_counter()
        writing = asyncio.create_task(writer())
        await asyncio.gather(*(agent(db, tasks) for db, tasks in zip(conns, plan, strict=True)))
        queue.put_nowait(None)
        await writing
        outcome.seconds = time.perf_counter() - started
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            cur = await db.execute("SELECT field, notes FROM artifact")
            final = {name: list(notes) for name, notes in await cur.fetchall()}
        for db in conns:
            await db.close()
    outcome.judge(final, {t.note for tasks in plan for t in tasks})
    outcome.wasted_thinks += outcome.lost  # a lost write's thinking was thrown away too
    return outcome


# -- crdtdoc -----------------------------------------------------------------------------------


async def run_crdtdoc(strategy: str, plan: list[list[Task]], think: float, hub: str) -> Outcome:
    outcome = Outcome(tasks=sum(len(t) for t in plan))
    url = f"{hub}/strategies-{uuid.uuid4().hex[:8]}"
    setup = crdtdoc.connect(url, agent="setup")
    await setup.start()
    # One task list per field: a guarded commit is then checked per field, as occ is.
    ids = {name: setup.tasks(name).add(name) for name in fields_of(plan)}
    await setup.flush()
    watcher = crdtdoc.connect(url, agent="watcher")
    agents = [crdtdoc.connect(url, agent=f"a{i}") for i in range(len(plan))]
    await asyncio.gather(watcher.start(), *(a.start() for a in agents))
    for replica in (watcher, *agents):
        await replica.wait_for(setup.version(), timeout=30)
    decided_at: dict[str, float] = {}
    waiting: set[str] = set()  # decided, not yet seen by the watcher
    everything = {t.note for ts in plan for t in ts}
    all_seen = asyncio.Event()
    seen = 0

    def on_update(update: bytes, local: bool) -> None:
        nonlocal seen
        now = time.perf_counter()
        for note in [n for n in waiting if n.encode() in update]:
            waiting.discard(note)
            outcome.latencies.append(now - decided_at[note])
            seen += 1
        if seen >= len(everything):
            all_seen.set()

    watcher.on_update(on_update)

    async def agent(replica: crdtdoc.ConnectedReplica, work: list[Task]) -> None:
        for task in work:
            tid = ids[task.field]
            artifact = replica.tasks(task.field)
            first: float | None = None
            lease = None
            if strategy == "crdtdoc-lease":
                lease = await replica.acquire(f"field/{task.field}", ttl=30, wait=120)
            while True:
                read = replica.version()
                outcome.seen[task.note] = len(artifact.get(tid).notes)
                outcome.thinks += 1
                await asyncio.sleep(think)
                first = first or time.perf_counter()
                decided_at[task.note] = first
                if strategy == "crdtdoc":
                    waiting.add(task.note)
                    artifact.note(tid, task.note)
                    break
                try:
                    waiting.add(task.note)
                    async with replica.commit(expect=read, on=[artifact], fence=lease):
                        artifact.note(tid, task.note)
                    break
                except crdtdoc.Conflict:
                    waiting.discard(task.note)
                    outcome.wasted_thinks += 1
            if lease is not None:
                await lease.release()

    started = time.perf_counter()
    await asyncio.gather(*(agent(r, w) for r, w in zip(agents, plan, strict=True)))
    await asyncio.gather(*(r.flush() for r in agents))
    await asyncio.wait_for(all_seen.wait(), timeout=60)
    outcome.seconds = time.perf_counter() - started
    final = {
        name: [n.text for n in watcher.tasks(name).get(tid).notes] for name, tid in ids.items()
    }
    outcome.judge(final, everything)
    for replica in (setup, watcher, *agents):
        await replica.close()
    return outcome


async def run(strategy: str, plan: list[list[Task]], think: float, hub: str) -> Outcome:
    if strategy.startswith("crdtdoc"):
        return await run_crdtdoc(strategy, plan, think, hub)
    return await run_postgres(strategy, plan, think)


# -- reporting ---------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = []
    for title, key, fixed in (
        ("By conflict rate", "conflict", "think"),
        ("By think time", "think", "conflict"),
    ):
        subset = [r for r in rows if r["sweep"] == key]
        if not subset:
            continue
        lines += [
            f"## {title} ({fixed} {subset[0][fixed]}{' s' if fixed == 'think' else ''})",
            "",
            f"| {key} | strategy | lost notes | stale decisions | wasted think | retries "
            "| tasks/s | visible p50 ms | visible p99 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in subset:
            lines.append(
                f"| {r[key]} | {r['strategy']} | {r['lost']} ({r['lost_pct']}%) "
                f"| {r['stale_pct']}% | {r['wasted_think_pct']}% | {r['retries']} "
                f"| {r['tasks_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], folder: Path = RESULTS) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plots")
        return []
    written = []
    for key, label in (("conflict", "conflict rate"), ("think", "think time (s)")):
        subset = [r for r in rows if r["sweep"] == key]
        if not subset:
            continue
        fig, axes = plt.subplots(1, 5, figsize=(21, 4))
        for ax, metric, title in (
            (axes[0], "lost_pct", "notes lost, %"),
            (axes[1], "stale_pct", "stale decisions, %"),
            (axes[2], "wasted_think_pct", "wasted think time, %"),
            (axes[3], "tasks_per_s", "throughput, tasks/s"),
            (axes[4], "p99_ms", "p99 until visible, ms"),
        ):
            for strategy in STRATEGIES:
                points = [(r[key], r[metric]) for r in subset if r["strategy"] == strategy]
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=strategy)
            ax.set_xlabel(label)
            ax.set_title(title, fontsize=10)
            if metric == "p99_ms":
                ax.set_yscale("log")
        axes[0].legend(fontsize=8)
        fixed = "think" if key == "conflict" else "conflict"
        fig.suptitle(
            f"{subset[0]['agents']} agents x {subset[0]['tasks']} tasks, {fixed} "
            f"{subset[0][fixed]}: read, think, write back",
            fontsize=11,
        )
        fig.tight_layout()
        name = f"strategies_by_{key}.png"
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written


def measure(
    strategy: str,
    plan: list[list[Task]],
    sweep: str,
    conflict: float,
    think: float,
    hub: str,
    agents: int,
) -> dict[str, Any]:
    outcome = asyncio.run(run(strategy, plan, think, hub))
    return {
        "sweep": sweep,
        "conflict": conflict,
        "think": think,
        "strategy": strategy,
        "agents": agents,
        **outcome.summary(),
    }


def headline_for(rows: list[dict[str, Any]], agents: int, think: float) -> list[str]:
    """One line per strategy: what happens when every task works on the one hot field."""
    hot = {r["strategy"]: r for r in rows if r["sweep"] == "conflict" and r["conflict"] == 1.0}
    if not hot:
        return []
    lines = [f"Every task on one field ({agents} agents, think {think} s):"]
    for s in STRATEGIES:
        if s in hot:
            r = hot[s]
            lines.append(
                f"{s}: {r['lost_pct']}% of notes lost, {r['stale_pct']}% stale decisions, "
                f"{r['wasted_think_pct']}% of thinking wasted, {r['tasks_per_s']} tasks/s, "
                f"visible p99 {r['p99_ms']} ms"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=12, help="tasks per agent")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CRDTDOC_SEED", "1")))
    parser.add_argument("--quick", action="store_true", help="a smaller grid, for a smoke run")
    args = parser.parse_args()
    conflicts = [0.0, 0.3, 1.0] if args.quick else [0.0, 0.1, 0.3, 0.6, 1.0]
    thinks = [0.01, 0.1] if args.quick else [0.01, 0.05, 0.2]
    base_think, base_conflict = 0.05, 0.3
    grid = [("conflict", c, base_think) for c in conflicts] + [
        ("think", base_conflict, t) for t in thinks
    ]
    print(f"seed {args.seed}; {args.agents} agents x {args.tasks} tasks")
    progress = Progress(len(grid) * len(STRATEGIES), "strategies")
    rows: list[dict[str, Any]] = []
    with hub_process() as process:
        hub = process.url
        for sweep, conflict, think in grid:
            plan = workload(args.agents, args.tasks, conflict, args.seed)
            for strategy in STRATEGIES:
                rows.append(measure(strategy, plan, sweep, conflict, think, hub, args.agents))
                r = rows[-1]
                progress.step(
                    f"{strategy} conflict={conflict} think={think}: lost {r['lost']}, "
                    f"{r['tasks_per_s']} tasks/s"
                )
    folder = results_dir(args.quick)
    plots = plot(rows, folder)
    headline = headline_for(rows, args.agents, base_think)
    save(
        "strategies",
        {
            "peers": {
                "PostgreSQL": _postgres_version(),
                "psycopg": package_version("psycopg"),
                "crdtdoc": package_version("crdtdoc"),
            },
            "seed": args.seed,
            "workload": {
                "agents": args.agents,
                "tasks_per_agent": args.tasks,
                "conflicts": conflicts,
                "thinks": thinks,
            },
            "headline": headline,
            "rows": rows,
            "plots": plots,
        },
        "# Concurrency strategies\n\n" + markdown(rows),
        folder,
    )
    print(markdown(rows))


def _postgres_version() -> str | None:
    with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN) as db:
        row = db.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None
    return None


if __name__ == "__main__":
    main()

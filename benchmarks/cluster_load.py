"""Several hubs on PostgreSQL + Redis, against one hub on SQLite, under the hub_load workload.

The same Node driver as `benchmarks.hub_load` (stock yjs + y-websocket clients) spreads its clients
over 1, 2 or 3 `crdtdoc serve --store postgresql://... --redis redis://...` processes (client i
joins hub i mod k), and over one SQLite hub for reference, all in one invocation, configurations
interleaved run by run. Reported: updates/s, edit-to-visible latency p50/p99 at the other clients
(most of them on another hub), CPU seconds of each hub and of PostgreSQL and Redis.

Then the cost of an acknowledged update: one agent editing and awaiting `flush()` in a loop (the
round trip until the hub reports the edit durable), and ten agents doing so at once, against a
SQLite hub and a PostgreSQL hub, interleaved.

Every PostgreSQL run gets a fresh database on the local server; Redis is a `redis-server` of the
benchmark's own on a free port. Setup: `pip install -e '.[bench]' && npm ci --prefix
benchmarks/hub_load`. Run: `python -m benchmarks.cluster_load` (results in
benchmarks/results/cluster_load.json, .md and .png).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks.hub_load import DRIVER_DIR, RESULTS, cpu_seconds, peak_rss_mib
from benchmarks.hub_load_scenarios import CORE_SCENARIOS, SCENARIOS
from benchmarks.processes import (
    PG_ADMIN,
    HubProcess,
    RedisServer,
    ServiceUnavailable,
    postgres_database,
)

CONFIGS = {
    "sqlite x1": ("sqlite", 1),
    "postgres x1": ("pg", 1),
    "postgres x2": ("pg", 2),
    "postgres x3": ("pg", 3),
}


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A redis-server of the run's own; yields its URL and process id."""
    try:
        server = RedisServer()
    except ServiceUnavailable as exc:
        sys.exit(f"needs {exc}")
    server.start()
    try:
        assert server.proc is not None
        yield server.url, server.proc.pid
    finally:
        server.stop()


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named postgres (the server and all its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except OSError:
            continue
    return total


@contextlib.contextmanager
def hubs(kind: str, count: int, tmp: str, redis_url: str) -> Iterator[list[tuple[int, int]]]:
    """`count` hub processes; yields (port, pid) of each."""
    with contextlib.ExitStack() as stack:
        if kind == "pg":
            store = stack.enter_context(postgres_database(PG_ADMIN, prefix="crdtdoc_bench"))
            extra = ["--redis", redis_url]
        else:
            store, extra = os.path.join(tmp, f"bench-{uuid.uuid4().hex[:8]}.db"), []
        running = []
        for _ in range(count):
            hub = HubProcess(store, 0, *extra, log=Path(tmp) / f"hub-{uuid.uuid4().hex[:8]}.log")
            stack.callback(hub.stop)
            hub.start()
            running.append(hub)
        yield [(hub.port, hub.proc.pid) for hub in running if hub.proc is not None]


def run_load(config: str, scenario: str, tmp: str, redis: tuple[str, int]) -> dict[str, object]:
    kind, count = CONFIGS[config]
    with hubs(kind, count, tmp, redis[0]) as running:
        urls = ",".join(f"ws://127.0.0.1:{port}" for port, _ in running)
        cpu0 = [cpu_seconds(pid) for _, pid in running]
        pg0, redis0 = postgres_cpu_seconds(), cpu_seconds(redis[1])
        out = subprocess.run(
            [
                "node",
                str(DRIVER_DIR / "driver.mjs"),
                urls,
                f"bench-{uuid.uuid4().hex[:6]}",
                *SCENARIOS[scenario],
            ],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"driver failed: {out.stderr[-2000:]}")
        result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
        result["hub_cpu_s"] = [
            round(cpu_seconds(pid) - c, 2) for (_, pid), c in zip(running, cpu0, strict=True)
        ]
        result["hub_peak_rss_mib"] = [round(peak_rss_mib(pid), 1) for _, pid in running]
        result["postgres_cpu_s"] = round(postgres_cpu_seconds() - pg0, 2) if kind == "pg" else 0.0
        result["redis_cpu_s"] = round(cpu_seconds(redis[1]) - redis0, 2) if kind == "pg" else 0.0
        return result


# -- the cost of an acknowledged update --------------------------------------------------------


async def _flush_loop(url: str, agent: str, count: int) -> list[float]:
    import crdtdoc

    times = []
    async with crdtdoc.connect(url, agent=agent) as replica:
        doc = replica.document("acks")
        for i in range(count):
            started = time.perf_counter()
            doc.append(f"{agent}:{i}\n")
            await replica.flush()
            times.append(time.perf_counter() - started)
    return times


def run_acks(
    kind: str, tmp: str, redis: tuple[str, int], agents: int, count: int
) -> dict[str, float]:
    with hubs(kind, 1, tmp, redis[0]) as ((port, pid),):
        url = f"ws://127.0.0.1:{port}/acks-{uuid.uuid4().hex[:6]}"
        cpu0 = cpu_seconds(pid)
        pg0 = postgres_cpu_seconds()

        async def all_agents() -> list[list[float]]:
            return list(
                await asyncio.gather(*(_flush_loop(url, f"a{i}", count) for i in range(agents)))
            )

        times = asyncio.run(all_agents())
        wall = max(sum(ts) for ts in times)  # the flush loops, without connecting
        flat = sorted(t for ts in times for t in ts)
        acks = len(flat)
        return {
            "acks_per_s": round(acks / wall, 1),
            "p50_ms": round(statistics.median(flat) * 1000, 2),
            "p99_ms": round(flat[min(acks - 1, int(0.99 * acks))] * 1000, 2),
            "hub_cpu_ms_per_ack": round((cpu_seconds(pid) - cpu0) / acks * 1000, 3),
            "postgres_cpu_ms_per_ack": round((postgres_cpu_seconds() - pg0) / acks * 1000, 3)
            if kind == "pg"
            else 0.0,
        }


# -- reporting ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def summarize(runs: list[dict[str, object]]) -> dict[str, object]:
    def col(key: str) -> list[float]:
        return [float(r[key]) for r in runs if r.get(key) is not None]  # type: ignore[arg-type]

    hub_cpu = [sum(r["hub_cpu_s"]) for r in runs]  # type: ignore[arg-type]
    return {
        "runs": len(runs),
        "all_converged": all(r["converged"] for r in runs),
        "updates_per_s": _median(col("updates_per_s")),
        "p50_ms": _median(col("p50_ms")),
        "p99_ms": _median(col("p99_ms")),
        "hub_cpu_s_total": _median(hub_cpu),
        "hub_cpu_s_each": [
            _median([r["hub_cpu_s"][i] for r in runs])  # type: ignore[index]
            for i in range(len(runs[0]["hub_cpu_s"]))
        ],  # type: ignore[arg-type]
        "postgres_cpu_s": _median(col("postgres_cpu_s")),
        "redis_cpu_s": _median(col("redis_cpu_s")),
        "hub_peak_rss_mib_max": _median([max(r["hub_peak_rss_mib"]) for r in runs]),  # type: ignore[type-var, arg-type]
    }


def markdown(
    load: dict[str, dict[str, dict[str, object]]], acks: dict[str, dict[str, dict[str, float]]]
) -> str:
    lines = [
        "## Load (median of runs)",
        "",
        "| scenario | hubs | converged | updates/s | p50 ms | p99 ms | CPU s per hub | "
        "PostgreSQL CPU s | Redis CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, configs in load.items():
        for config, s in configs.items():
            lines.append(
                f"| {scenario} | {config} | {'yes' if s['all_converged'] else 'NO'} "
                f"| {s['updates_per_s']} | {s['p50_ms']} | {s['p99_ms']} "
                f"| {' / '.join(str(c) for c in s['hub_cpu_s_each'])} "  # type: ignore[attr-defined]
                f"| {s['postgres_cpu_s']} | {s['redis_cpu_s']} | {s['hub_peak_rss_mib_max']} |"
            )
    lines += [
        "",
        "## An acknowledged update: edit, then `await flush()` (median of runs)",
        "",
        "| agents | store | acks/s | p50 ms | p99 ms | hub CPU ms/ack | PostgreSQL CPU ms/ack |",
        "|---|---|---|---|---|---|---|",
    ]
    for agents, stores in acks.items():
        for store, a in stores.items():
            lines.append(
                f"| {agents} | {store} | {a['acks_per_s']} | {a['p50_ms']} | {a['p99_ms']} "
                f"| {a['hub_cpu_ms_per_ack']} | {a['postgres_cpu_ms_per_ack']} |"
            )
    return "\n".join(lines) + "\n"


def plot(load: dict[str, dict[str, dict[str, object]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot")
        return
    scenarios = list(load)
    configs = list(CONFIGS)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = 0.8 / len(configs)
    for ax, key, label in (
        (axes[0], "updates_per_s", "updates/s (higher is better)"),
        (axes[1], "p99_ms", "p99 edit-to-visible, ms (lower is better)"),
        (axes[2], "cpu", "CPU s: hubs + PostgreSQL + Redis"),
    ):
        for k, config in enumerate(configs):
            values = []
            for s in scenarios:
                r = load[s].get(config, {})
                if key == "cpu":
                    values.append(
                        float(r.get("hub_cpu_s_total") or 0)
                        + float(r.get("postgres_cpu_s") or 0)
                        + float(r.get("redis_cpu_s") or 0)
                    )  # type: ignore[arg-type]
                else:
                    values.append(float(r.get(key) or 0))  # type: ignore[arg-type]
            ax.bar([i + k * width for i in range(len(scenarios))], values, width, label=config)
        ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(scenarios))])
        ax.set_xticklabels(scenarios)
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "crdtdoc on SQLite (one hub) and on PostgreSQL + Redis (1-3 hubs), 2 shared cores",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--acks", type=int, default=200, help="flushes per agent in the ack test")
    args = parser.parse_args()
    if shutil.which("node") is None or not (DRIVER_DIR / "node_modules" / "yjs").is_dir():
        sys.exit("needs node and `npm ci --prefix benchmarks/hub_load`")
    scenarios = args.scenario or CORE_SCENARIOS
    raw: dict[str, dict[str, list[dict[str, object]]]] = {
        s: {c: [] for c in CONFIGS} for s in scenarios
    }
    ack_raw: dict[str, dict[str, list[dict[str, float]]]] = {
        f"{n}": {"sqlite": [], "postgres": []} for n in (1, 10)
    }
    total = len(scenarios) * len(CONFIGS) * args.repeat + 4 * args.repeat
    done = 0
    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis:
        for _ in range(args.repeat):
            for scenario in scenarios:
                for config in CONFIGS:
                    done += 1
                    print(f"[{done}/{total}] {scenario} on {config} ...", end=" ", flush=True)
                    result = run_load(config, scenario, tmp, redis)
                    raw[scenario][config].append(result)
                    print(
                        f"{result['updates_per_s']:.0f} updates/s, p99 {result['p99_ms']:.1f} ms"
                        if result["converged"]
                        else "did NOT converge",
                        flush=True,
                    )
            for agents in (1, 10):
                for store, kind in (("sqlite", "sqlite"), ("postgres", "pg")):
                    done += 1
                    print(
                        f"[{done}/{total}] flush loop, {agents} agent(s), {store} ...",
                        end=" ",
                        flush=True,
                    )
                    count = args.acks if agents == 1 else max(args.acks // 4, 10)
                    a = run_acks(kind, tmp, redis, agents, count)
                    ack_raw[str(agents)][store].append(a)
                    print(f"{a['acks_per_s']} acks/s, p50 {a['p50_ms']} ms", flush=True)
    load = {s: {c: summarize(runs) for c, runs in cs.items()} for s, cs in raw.items()}
    acks = {
        n: {
            store: {k: _median([r[k] for r in runs]) for k in runs[0]}
            for store, runs in stores.items()
        }
        for n, stores in ack_raw.items()
    }
    RESULTS.mkdir(exist_ok=True)
    report = {
        "benchmark": "cluster_load",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "clients": "yjs 13.6.33 + y-websocket 3.1.0 providers in one Node process, "
        "client i on hub i mod k",
        "scenarios": {s: SCENARIOS[s] for s in scenarios},
        "load": load,
        "acks": acks,
        "runs": raw,
        "ack_runs": ack_raw,
    }
    (RESULTS / "cluster_load.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(load, acks)
    (RESULTS / "cluster_load.md").write_text(
        "# Several hubs on PostgreSQL + Redis (see cluster_load.json for every run)\n\n" + table
    )
    plot(load, RESULTS / "cluster_load.png")
    from benchmarks.report import write_results

    write_results()
    print(table)


if __name__ == "__main__":
    main()

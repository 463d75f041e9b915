"""The hub under load, against its peers, driven by the same stock Yjs clients.

Every hub is driven by the same Node process of `yjs` clients (`hub_load/driver.mjs`; y-websocket
providers, or Hocuspocus's own provider for Hocuspocus), so the comparison is between hubs, not
clients. In one invocation it runs:

- crdtdoc: `crdtdoc serve` (validating every update, acknowledging only after the SQLite commit);
  `crdtdoc-no-history` is the same with `--no-history` (run with `--hub crdtdoc-no-history`);
- y-websocket: the npm `@y/websocket-server` reference server (in memory, no persistence);
- hocuspocus: the npm `@hocuspocus/server` (in memory, no persistence extension);
- pycrdt-websocket: `pycrdt.websocket.WebsocketServer` on `websockets` (in memory).

Scenarios: 10 and 50 clients editing as fast as they go (burst) and paced (rate), and "agent
flushes": 50 clients each sending one 300 KB update at a random moment within 20 s while one
client types 10 edits/s. Reported per hub: time to converge, updates/s through the hub,
edit-to-visible latency p50/p99 at the other clients (and the typist's p99 during flushes), hub
CPU seconds and peak RSS, and crdtdoc's ratio to each peer. Each figure is the median of
`--repeat` runs, hubs interleaved run by run so machine noise hits all alike.

Reconnect storms (`hub_load/storm.mjs`): the room holds the automerge-paper document (the whole
editing trace applied to a Y.Doc, a 223 KB update for 104,852 characters; the typist holds it
before it connects, so every hub gets the same bytes from its sync step 2). 50 stock Yjs clients
join and sync it one at a time; the typist types 10 edits/s into the middle of it; 2 s later all
50 close their connections at once and, once every socket is closed, all reconnect at once, each
on a new connection. In `reconnect-storm-50` each keeps its provider and Y.Doc (a real reconnect:
the hub answers 50 sync step 1s of up-to-date peers with small step 2s); in
`reconnect-storm-50-fresh` each comes back with an empty Y.Doc, so the hub sends the whole
document 50 times. Reported: the time from the reconnect moment until all 50 are synced again
(had their sync step 2 and hold every edit typed before that moment), the typist's
edit-to-visible latency p50/p99 at the 50 for edits typed from 0.5 s before the disconnect until
8 s after it, hub CPU seconds (whole run, and from the disconnect until all resynced) and peak
RSS, how busy the clients' own Node event loop was during the resync (near 100%: the clients, not
the hub, set the resync time on this machine), and crdtdoc's ratio to each peer (y-websocket's
resync time is the target). About 20 s per hub and run. pycrdt-websocket is left out of the
storms unless named with `--hub` (its server dies in them: see STORM_UNSUPPORTED).

Recorded results are merged: a run of some scenarios or hubs (`--scenario`, `--hub`) replaces
those rows in benchmarks/results/hub_load.json and keeps the others (each scenario's date is in
`dates`); `--fresh` drops them. `--plot-only` redraws the plot and tables from the record.

Setup: `pip install -e '.[bench]' && npm ci --prefix benchmarks/hub_load`.
Run: `python -m benchmarks hub_load` (results in benchmarks/results/hub_load.json, .md, .png);
`python -m benchmarks hub_load --scenario reconnect-storm-50 --repeat 3` for one scenario.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.hub_load_report import dates_note, headlines, markdown, plot
from benchmarks.hub_load_scenarios import (
    HUB_ORDER,
    SCENARIOS,
    STORM_UNSUPPORTED,
    Results,
    is_storm,
)
from benchmarks.processes import free_port, wait_listening

HERE = Path(__file__).parent
DRIVER_DIR = HERE / "hub_load"
RESULTS = HERE / "results"

TITLE = "# Hub load (median of runs; see hub_load.json for every run and each scenario's date)\n\n"


def hub_command(hub: str, port: int, db: str) -> list[str]:
    if hub in ("crdtdoc", "crdtdoc-no-history"):
        command = [sys.executable, "-m", "crdtdoc.cli", "serve", "--port", str(port), "--db", db]
        return command + (["--no-history"] if hub == "crdtdoc-no-history" else [])
    if hub == "y-websocket":
        server = DRIVER_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
        return ["node", str(server)]
    if hub == "hocuspocus":
        return ["node", str(DRIVER_DIR / "hocuspocus_server.mjs")]
    return [sys.executable, str(DRIVER_DIR / "pycrdt_websocket_server.py"), str(port)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def log_lines(path: str) -> tuple[int, list[str]]:
    """How many lines a hub logged, and those that look like trouble (at most 5)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return 0, []
    trouble = [
        line[:300]
        for line in lines
        if re.search(r'"level": "(warning|error|critical)"|Traceback|Error|WARN', line)
    ]
    return len(lines), trouble[:5]


def run_once(hub: str, scenario: str, tmp: str, hub_logs: Path | None = None) -> dict[str, object]:
    port = free_port()
    db = os.path.join(tmp, f"{hub}-{port}.db")
    log = os.path.join(tmp, f"{hub}-{port}.log")
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            hub_command(hub, port, db), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_listening(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        room = f"bench-{port}"
        driver_env = dict(os.environ)
        if hub == "hocuspocus":
            driver_env["CRDTDOC_PROVIDER"] = "hocuspocus"
        if is_storm(scenario):
            from benchmarks.common import trace_path

            driver_env["CRDTDOC_TRACE"] = str(trace_path(None))
            driver_env["CRDTDOC_STORM_CACHE"] = os.path.join(tmp, "automerge-paper.yjs")
            driver_env["CRDTDOC_HUB_PID"] = str(proc.pid)
            driver_env["CRDTDOC_CLK_TCK"] = str(os.sysconf("SC_CLK_TCK"))
        out = subprocess.run(
            [
                "node",
                str(DRIVER_DIR / "driver.mjs"),
                f"ws://127.0.0.1:{port}",
                room,
                *SCENARIOS[scenario],
            ],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
            env=driver_env,
        )
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"driver failed: {out.stderr[-2000:]}")
        result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
        result["hub_cpu_s"] = cpu_seconds(proc.pid) - cpu0
        result["hub_peak_rss_mib"] = peak_rss_mib(proc.pid)
        result["hub_log_lines"], result["hub_log_trouble"] = log_lines(log)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if hub_logs is not None:
            hub_logs.mkdir(parents=True, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{scenario}-{hub}-{port}.log")
            shutil.copy(log, hub_logs / safe)


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    summary: dict[str, object] = {
        "runs": len(runs),
        "all_converged": all(r["converged"] for r in runs),
    }
    for key in (
        "seconds",
        "updates_per_s",
        "p50_ms",
        "p99_ms",
        "typist_p99_ms",
        "hub_cpu_s",
        "hub_peak_rss_mib",
        # reconnect storms
        "sync_all_s",
        "step2_all_s",
        "sync_median_s",
        "close_all_s",
        "typist_p50_ms",
        "baseline_p99_ms",
        "max_ms",
        "unplanned_closes",
        "hub_cpu_storm_s",
        "driver_busy_resync",
    ):
        if not any(key in r for r in runs):
            continue
        values = [float(r[key]) for r in runs if r.get(key) is not None]  # type: ignore[arg-type]
        summary[key] = round(statistics.median(values), 3) if values else None
    troubles = [t for r in runs if isinstance(t := r.get("hub_log_trouble"), list)]
    if troubles:
        summary["hub_log_trouble"] = sum(len(t) for t in troubles)
    return summary


def available_hubs() -> list[str]:
    hubs = ["crdtdoc"]
    if (DRIVER_DIR / "node_modules" / "@y" / "websocket-server").is_dir():
        hubs.append("y-websocket")
    if (DRIVER_DIR / "node_modules" / "@hocuspocus" / "server").is_dir():
        hubs.append("hocuspocus")
    try:
        import pycrdt.websocket  # noqa: F401

        hubs.append("pycrdt-websocket")
    except ImportError:
        print("pycrdt-websocket not installed (pip install -e '.[bench]'): skipping it")
    return hubs


def merge_recorded(
    recorded: dict[str, Any],
    results: Results,
    raw: dict[str, dict[str, list[dict[str, object]]]],
    date: str,
) -> tuple[Results, dict[str, dict[str, list[dict[str, object]]]], dict[str, str], dict[str, Any]]:
    """The recorded medians, runs, dates and scenario arguments with this run's rows (scenario
    and hub) in place of theirs; every other recorded row is kept. Scenarios in SCENARIOS order,
    hubs in HUB_ORDER."""
    old_median: Results = recorded.get("median", {})
    old_runs: dict[str, dict[str, list[dict[str, object]]]] = recorded.get("runs", {})
    old_dates: dict[str, str] = recorded.get("dates", {})
    old_args: dict[str, Any] = recorded.get("scenarios", {})
    names = [s for s in SCENARIOS if s in old_median or s in results]
    names += [s for s in old_median if s not in names]

    def hub_key(hub: str) -> int:
        return HUB_ORDER.index(hub) if hub in HUB_ORDER else len(HUB_ORDER)

    median: Results = {}
    runs: dict[str, dict[str, list[dict[str, object]]]] = {}
    dates: dict[str, str] = {}
    args: dict[str, Any] = {}
    for s in names:
        merged = {**old_median.get(s, {}), **results.get(s, {})}
        median[s] = {h: merged[h] for h in sorted(merged, key=hub_key)}
        merged_runs = {**old_runs.get(s, {}), **raw.get(s, {})}
        runs[s] = {h: merged_runs[h] for h in sorted(merged_runs, key=hub_key)}
        dates[s] = date if s in results else old_dates.get(s, recorded.get("date", "?"))
        args[s] = SCENARIOS.get(s, old_args.get(s))
    return median, runs, dates, args


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per hub and scenario")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument(
        "--hub",
        action="append",
        help="only these hubs (crdtdoc-no-history: crdtdoc serve --no-history, only when named)",
    )
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw the plot and tables from the recorded results",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="record only this run's rows (by default the recorded rows of other scenarios and "
        "hubs are kept)",
    )
    parser.add_argument("--hub-logs", type=Path, help="keep every hub's log in this folder")
    args = parser.parse_args()
    recorded_path = RESULTS / "hub_load.json"
    if args.plot_only:
        recorded = json.loads(recorded_path.read_text())
        plot(recorded["median"], RESULTS / "hub_load.png")
        note = dates_note(recorded.get("dates", {}))
        (RESULTS / "hub_load.md").write_text(TITLE + note + markdown(recorded["median"]))
        return
    if shutil.which("node") is None or not (DRIVER_DIR / "node_modules" / "yjs").is_dir():
        sys.exit("needs node and `npm ci --prefix benchmarks/hub_load`")
    hubs = args.hub or available_hubs()
    scenarios = args.scenario or list(SCENARIOS)
    raw: dict[str, dict[str, list[dict[str, object]]]] = {}
    for s in scenarios:
        raw[s] = {}
        for h in hubs:
            if is_storm(s) and h in STORM_UNSUPPORTED and not args.hub:
                print(f"{s}: skipping {h} ({STORM_UNSUPPORTED[h]}; --hub {h} runs it)")
            else:
                raw[s][h] = []
    total = sum(len(by_hub) for by_hub in raw.values()) * args.repeat
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            for _ in range(args.repeat):
                for hub in raw[scenario]:
                    done += 1
                    print(f"[{done}/{total}] {scenario} on {hub} ...", end=" ", flush=True)
                    result = run_once(hub, scenario, tmp, args.hub_logs)
                    raw[scenario][hub].append(result)
                    if not result["converged"]:
                        summary = "did NOT converge"
                    elif is_storm(scenario):
                        summary = (
                            f"all resynced in {result['sync_all_s']:.2f} s, typist p50 "
                            f"{result['typist_p50_ms']:.1f} ms, p99 "
                            f"{result['typist_p99_ms']:.1f} ms"
                        )
                    else:
                        summary = (
                            f"{result['updates_per_s']:.0f} updates/s, "
                            f"p99 {result['p99_ms']:.1f} ms"
                        )
                    trouble = result.get("hub_log_trouble")
                    if isinstance(trouble, list) and trouble:
                        summary += f"; hub logged {len(trouble)}+ warnings: {trouble[0]}"
                    print(f"{summary}, hub CPU {result['hub_cpu_s']:.2f} s", flush=True)
    results = {s: {h: median_of(runs) for h, runs in hubs_.items()} for s, hubs_ in raw.items()}
    from benchmarks.common import npm_version, package_version, save

    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    recorded = {}
    if not args.fresh and recorded_path.is_file():
        recorded = json.loads(recorded_path.read_text())
    median, runs, dates, scenario_args = merge_recorded(recorded, results, raw, date)
    RESULTS.mkdir(exist_ok=True)
    plot(median, RESULTS / "hub_load.png")
    table = markdown(median)
    save(
        "hub_load",
        {
            "clients": "yjs + y-websocket (Hocuspocus: @hocuspocus/provider) in one Node process",
            "peers": {
                "crdtdoc": package_version("crdtdoc"),
                "yjs": npm_version(DRIVER_DIR, "yjs"),
                "y-websocket": npm_version(DRIVER_DIR, "y-websocket"),
                "@y/websocket-server": npm_version(DRIVER_DIR, "@y/websocket-server"),
                "@hocuspocus/server": npm_version(DRIVER_DIR, "@hocuspocus/server"),
                "pycrdt-websocket": package_version("pycrdt-websocket"),
            },
            "scenarios": scenario_args,
            "dates": dates,
            "headline": headlines(median),
            "median": median,
            "runs": runs,
        },
        TITLE + dates_note(dates) + table,
    )
    print(table)


if __name__ == "__main__":
    main()

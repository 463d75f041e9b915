"""The hub under load, against its peers, driven by the same stock Yjs clients.

Every hub is driven by the same Node process of `yjs` clients (`hub_load/driver.mjs`; y-websocket
providers, or Hocuspocus's own provider for Hocuspocus), so the comparison is between hubs, not
clients. In one invocation it runs:

- crdtdoc: `crdtdoc serve` (validating every update, acknowledging only after the SQLite commit);
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DRIVER_DIR = HERE / "hub_load"
RESULTS = HERE / "results"

SCENARIOS = {
    "burst-10x1000": ["10", "burst", "1000"],
    "burst-50x100": ["50", "burst", "100"],
    "rate-10x5/s": ["10", "rate", "5", "20"],
    "rate-50x2/s": ["50", "rate", "2", "20"],
    "flush-50x300KB": ["50", "flush", "300", "20"],
    "reconnect-storm-50": ["50", "storm", "10", "keep"],
    "reconnect-storm-50-fresh": ["50", "storm", "10", "fresh"],
}
CORE_SCENARIOS = ["burst-10x1000", "rate-50x2/s"]  # what cluster_load reuses
HUB_ORDER = ["crdtdoc", "y-websocket", "hocuspocus", "pycrdt-websocket"]
TITLE = "# Hub load (median of runs; see hub_load.json for every run and each scenario's date)\n\n"
Results = dict[str, dict[str, dict[str, object]]]  # scenario -> hub -> median figures


# Hubs left out of the reconnect storms unless named with --hub, and why.
STORM_UNSUPPORTED = {
    "pycrdt-websocket": "its server process dies in the storm: a send to a closed connection "
    "raises ConnectionClosedOK in the room's task group, which closes the room's other "
    "connections (hundreds of reconnects) and ends the server",
}


def is_storm(scenario: str, args: list[str] | None = None) -> bool:
    """Whether a scenario is a reconnect storm (driver mode "storm"), reported apart."""
    return (args or SCENARIOS.get(scenario, ["", ""]))[1] == "storm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def hub_command(hub: str, port: int, db: str) -> list[str]:
    if hub == "crdtdoc":
        return [sys.executable, "-m", "crdtdoc.cli", "serve", "--port", str(port), "--db", db]
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


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("hub did not start listening")


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


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _ratio(ours: dict[str, object], theirs: dict[str, object], key: str) -> str:
    if not theirs.get("all_converged"):
        return "n/a (peer did not converge)"
    a, b = ours.get(key), theirs.get(key)
    return f"{float(a) / float(b):.2f}x" if a and b else "-"  # type: ignore[arg-type]


def _percent(value: object) -> str:
    return "-" if value is None else f"{float(value) * 100:.0f}%"  # type: ignore[arg-type]


def markdown(results: Results) -> str:
    loads = {s: h for s, h in results.items() if not is_storm(s)}
    storms = {s: h for s, h in results.items() if is_storm(s)}
    lines: list[str] = []
    if loads:
        lines += [
            "| scenario | hub | converged | time to converge (s) | updates/s | p50 (ms) | p99 (ms) "
            "| typist p99 (ms) | hub CPU (s) | hub peak RSS (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for scenario, hubs in loads.items():
            for hub, s in hubs.items():
                lines.append(
                    f"| {scenario} | {hub} | {'yes' if s['all_converged'] else 'NO'} "
                    f"| {s['seconds']} | {s['updates_per_s']} | {s['p50_ms']} | {s['p99_ms']} "
                    f"| {s.get('typist_p99_ms') or '-'} | {s['hub_cpu_s']} "
                    f"| {s['hub_peak_rss_mib']} |"
                )
    if storms:
        lines += [
            *([""] if lines else []),
            "## Reconnect storms",
            "",
            "50 clients synced to the automerge-paper document (104,852 characters) all reconnect "
            "at once while a 51st types 10 edits/s. Resync: from the reconnect moment until all 50 "
            "had their sync step 2 and hold every edit typed before it (median client in "
            "brackets); typist latency: edits typed from 0.5 s before the disconnect until 8 s "
            "after it, seen at the 50 (before the storm: p99 of the edits typed earlier); hub CPU "
            "in the storm: from the disconnect until all 50 resynced; clients busy: the share "
            "of the resync during which the clients' Node event loop was busy (near 100%, the "
            "clients set the pace, not the hub).",
            "",
            "| scenario | hub | converged | resync all 50 (s) | step 2 at all 50 (s) "
            "| typist p50 (ms) | typist p99 (ms) | p99 before the storm (ms) "
            "| closes after reconnect | hub CPU in the storm (s) | hub CPU (s) "
            "| hub peak RSS (MiB) | clients busy |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for scenario, hubs in storms.items():
            for hub, s in hubs.items():
                lines.append(
                    f"| {scenario} | {hub} | {'yes' if s['all_converged'] else 'NO'} "
                    f"| {_cell(s.get('sync_all_s'))} ({_cell(s.get('sync_median_s'))}) "
                    f"| {_cell(s.get('step2_all_s'))} | {_cell(s.get('typist_p50_ms'))} "
                    f"| {_cell(s.get('typist_p99_ms'))} | {_cell(s.get('baseline_p99_ms'))} "
                    f"| {_cell(s.get('unplanned_closes'))} | {_cell(s.get('hub_cpu_storm_s'))} "
                    f"| {s['hub_cpu_s']} | {s['hub_peak_rss_mib']} "
                    f"| {_percent(s.get('driver_busy_resync'))} |"
                )
        left_out = [h for h in STORM_UNSUPPORTED if not any(h in hubs for hubs in storms.values())]
        lines += ["", *[f"Not run in the storms: {h}: {STORM_UNSUPPORTED[h]}." for h in left_out]]
    lines += ["", "## crdtdoc against each peer", "", *ratio_lines(results)]
    return "\n".join(lines) + "\n"


def ratio_lines(results: Results) -> list[str]:
    """crdtdoc's figures as multiples of each peer's, per scenario: updates/s, p99 and CPU under
    load; resync time, typist p99 and CPU in reconnect storms."""
    lines: list[str] = []
    for storm, header, keys in (
        (
            False,
            "| scenario | peer | updates/s (crdtdoc / peer) | p99 (crdtdoc / peer) "
            "| CPU (crdtdoc / peer) |",
            ("updates_per_s", "p99_ms", "hub_cpu_s"),
        ),
        (
            True,
            "| scenario | peer | resync all 50 (crdtdoc / peer) | typist p99 (crdtdoc / peer) "
            "| CPU in the storm (crdtdoc / peer) | CPU (crdtdoc / peer) |",
            ("sync_all_s", "typist_p99_ms", "hub_cpu_storm_s", "hub_cpu_s"),
        ),
    ):
        rows = []
        for scenario, hubs in results.items():
            ours = hubs.get("crdtdoc")
            if ours is None or is_storm(scenario) != storm:
                continue
            for peer, theirs in hubs.items():
                if peer != "crdtdoc":
                    cells = " | ".join(_ratio(ours, theirs, key) for key in keys)
                    rows.append(f"| {scenario} | {peer} | {cells} |")
        if rows:
            separator = "|---|---|" + "---|" * len(keys)
            lines += [*([""] if lines else []), header, separator, *rows]
    return lines


def headlines(results: Results) -> list[str]:
    """One sentence per scenario: crdtdoc beside the fastest peer (under load), or beside the
    y-websocket server, the target, and the fastest peer (in a storm)."""
    lines = []
    for scenario, by_hub in results.items():
        ours = by_hub.get("crdtdoc")
        peers = {h: r for h, r in by_hub.items() if h != "crdtdoc" and r["all_converged"]}
        if not ours or not peers:
            continue
        if not is_storm(scenario):
            best = max(peers, key=lambda h: float(peers[h]["updates_per_s"] or 0))  # type: ignore[arg-type]
            lines.append(
                f"{scenario}: crdtdoc {ours['updates_per_s']} updates/s, p99 {ours['p99_ms']} "
                f"ms; fastest peer {best} {peers[best]['updates_per_s']} updates/s, "
                f"p99 {peers[best]['p99_ms']} ms."
            )
            continue
        timed = {h: r for h, r in peers.items() if r.get("sync_all_s") is not None}
        sentence = (
            f"{scenario}: all 50 resynced in {ours.get('sync_all_s')} s on crdtdoc "
            f"({'converged' if ours['all_converged'] else 'NOT converged'}), typist p99 "
            f"{ours.get('typist_p99_ms')} ms, hub CPU {ours['hub_cpu_s']} s"
        )
        ywebsocket = peers.get("y-websocket")
        if ywebsocket and ywebsocket.get("sync_all_s") is not None:
            sentence += (
                f"; y-websocket {ywebsocket['sync_all_s']} s (crdtdoc / y-websocket "
                f"{_ratio(ours, ywebsocket, 'sync_all_s')} resync, "
                f"{_ratio(ours, ywebsocket, 'hub_cpu_s')} CPU, "
                f"{_ratio(ours, ywebsocket, 'hub_cpu_storm_s')} CPU in the storm), typist p99 "
                f"{ywebsocket.get('typist_p99_ms')} ms"
            )
        if timed:
            best = min(timed, key=lambda h: float(timed[h]["sync_all_s"]))  # type: ignore[arg-type]
            if best != "y-websocket":
                sentence += f"; fastest peer {best} {timed[best]['sync_all_s']} s"
        lines.append(sentence + ".")
    return lines


def plot(results: Results, path: Path) -> None:
    """Bars per scenario and hub: updates/s under load, p99 edit-to-visible latency (log scale;
    the typist's during a storm), and the time until all 50 resynced after a reconnect storm."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot")
        return
    hubs = sorted(
        {h for s in results.values() for h in s},
        key=lambda h: HUB_ORDER.index(h) if h in HUB_ORDER else len(HUB_ORDER),
    )
    loads = [s for s in results if not is_storm(s)]
    storms = [s for s in results if is_storm(s)]
    panels = [
        (loads, "updates_per_s", "updates/s through the hub (higher is better)", False),
        (list(results), "p99_ms", "p99 edit-to-visible latency, ms (lower is better)", True),
        (
            storms,
            "sync_all_s",
            "reconnect storms: s until all 50\nresynced (lower is better)",
            False,
        ),
    ]
    panels = [p for p in panels if p[0]]
    widths = [max(len(p[0]), 1) + 1 for p in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(10, 1.1 * sum(widths)), 5), width_ratios=widths, squeeze=False
    )
    width = 0.8 / len(hubs)
    colours = {h: f"C{k}" for k, h in enumerate(hubs)}
    for ax, (scenarios, key, label, log) in zip(axes[0], panels, strict=True):
        for k, hub in enumerate(hubs):
            values = [float(results[s].get(hub, {}).get(key) or 0) for s in scenarios]  # type: ignore[arg-type]
            bars = ax.bar(
                [i + k * width for i in range(len(scenarios))],
                values,
                width,
                label=hub,
                color=colours[hub],
            )
            for bar, s in zip(bars, scenarios, strict=True):
                if not results[s].get(hub, {}).get("all_converged", True):
                    bar.set_hatch("//")
        ax.set_xticks([i + width * (len(hubs) - 1) / 2 for i in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=20, fontsize=8, ha="right")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "Hubs driven by the same yjs clients (y-websocket providers; Hocuspocus with its own "
        "provider), median of runs; hatched: some run did not converge",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def dates_note(dates: dict[str, str]) -> str:
    """Which scenarios ran when, if the record merges runs of different days."""
    if len(set(dates.values())) <= 1:
        return ""
    by_date: dict[str, list[str]] = {}
    for scenario, date in dates.items():
        by_date.setdefault(date, []).append(scenario)
    return "Run on " + "; ".join(f"{d}: {', '.join(s)}" for d, s in by_date.items()) + ".\n\n"


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
    parser.add_argument("--hub", action="append", help="only these hubs")
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

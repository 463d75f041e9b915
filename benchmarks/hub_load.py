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

Setup: `pip install -e '.[bench]' && npm ci --prefix benchmarks/hub_load`.
Run: `python -m benchmarks hub_load` (results in benchmarks/results/hub_load.json, .md, .png).
"""

from __future__ import annotations

import argparse
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

HERE = Path(__file__).parent
DRIVER_DIR = HERE / "hub_load"
RESULTS = HERE / "results"

SCENARIOS = {
    "burst-10x1000": ["10", "burst", "1000"],
    "burst-50x100": ["50", "burst", "100"],
    "rate-10x5/s": ["10", "rate", "5", "20"],
    "rate-50x2/s": ["50", "rate", "2", "20"],
    "flush-50x300KB": ["50", "flush", "300", "20"],
}
CORE_SCENARIOS = ["burst-10x1000", "rate-50x2/s"]  # what cluster_load reuses


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


def run_once(hub: str, scenario: str, tmp: str) -> dict[str, object]:
    port = free_port()
    db = os.path.join(tmp, f"{hub}-{port}.db")
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    proc = subprocess.Popen(
        hub_command(hub, port, db), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, proc)
        cpu0 = cpu_seconds(proc.pid)
        room = f"bench-{port}"
        driver_env = dict(os.environ)
        if hub == "hocuspocus":
            driver_env["CRDTDOC_PROVIDER"] = "hocuspocus"
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
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    ):
        values = [float(r[key]) for r in runs if r.get(key) is not None]  # type: ignore[arg-type]
        summary[key] = round(statistics.median(values), 3) if values else None
    return summary


def markdown(results: dict[str, dict[str, dict[str, object]]]) -> str:
    lines = [
        "| scenario | hub | converged | time to converge (s) | updates/s | p50 (ms) | p99 (ms) "
        "| typist p99 (ms) | hub CPU (s) | hub peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, hubs in results.items():
        for hub, s in hubs.items():
            lines.append(
                f"| {scenario} | {hub} | {'yes' if s['all_converged'] else 'NO'} | {s['seconds']} "
                f"| {s['updates_per_s']} | {s['p50_ms']} | {s['p99_ms']} "
                f"| {s.get('typist_p99_ms') or '-'} | {s['hub_cpu_s']} "
                f"| {s['hub_peak_rss_mib']} |"
            )
    lines += ["", "## crdtdoc against each peer", "", *ratio_lines(results)]
    return "\n".join(lines) + "\n"


def ratio_lines(results: dict[str, dict[str, dict[str, object]]]) -> list[str]:
    """crdtdoc's updates/s and p99 as multiples of each peer's, per scenario."""
    lines = [
        "| scenario | peer | updates/s (crdtdoc / peer) | p99 (crdtdoc / peer) "
        "| CPU (crdtdoc / peer) |",
        "|---|---|---|---|---|",
    ]
    for scenario, hubs in results.items():
        ours = hubs.get("crdtdoc")
        if ours is None:
            continue
        for peer, theirs in hubs.items():
            if peer == "crdtdoc":
                continue
            cells = []
            for key in ("updates_per_s", "p99_ms", "hub_cpu_s"):
                a, b = ours.get(key), theirs.get(key)
                cells.append(
                    f"{float(a) / float(b):.2f}x"  # type: ignore[arg-type]
                    if a and b and theirs.get("all_converged")
                    else "n/a (peer did not converge)"
                    if not theirs.get("all_converged")
                    else "-"
                )
            lines.append(f"| {scenario} | {peer} | {' | '.join(cells)} |")
    return lines


def plot(results: dict[str, dict[str, dict[str, object]]], path: Path) -> None:
    """Bars per scenario and hub: updates/s, and p99 edit-to-visible latency (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot")
        return
    scenarios = list(results)
    hubs = sorted({h for s in results.values() for h in s})
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8))
    width = 0.8 / len(hubs)
    for ax, key, label in (
        (axes[0], "updates_per_s", "updates/s through the hub (higher is better)"),
        (axes[1], "p99_ms", "p99 edit-to-visible latency, ms (lower is better)"),
    ):
        for k, hub in enumerate(hubs):
            values = [float(results[s].get(hub, {}).get(key) or 0) for s in scenarios]  # type: ignore[arg-type]
            bars = ax.bar([i + k * width for i in range(len(scenarios))], values, width, label=hub)
            for bar, s in zip(bars, scenarios, strict=True):
                if not results[s].get(hub, {}).get("all_converged", True):
                    bar.set_hatch("//")
        ax.set_xticks([i + width * (len(hubs) - 1) / 2 for i in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=15, fontsize=8)
        ax.set_title(label, fontsize=10)
        if key == "p99_ms":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per hub and scenario")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--hub", action="append", help="only these hubs")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from the recorded results"
    )
    args = parser.parse_args()
    if args.plot_only:
        recorded = json.loads((RESULTS / "hub_load.json").read_text())
        plot(recorded["median"], RESULTS / "hub_load.png")
        return
    if shutil.which("node") is None or not (DRIVER_DIR / "node_modules" / "yjs").is_dir():
        sys.exit("needs node and `npm ci --prefix benchmarks/hub_load`")
    hubs = args.hub or available_hubs()
    scenarios = args.scenario or list(SCENARIOS)
    raw: dict[str, dict[str, list[dict[str, object]]]] = {
        s: {h: [] for h in hubs} for s in scenarios
    }
    total = len(scenarios) * len(hubs) * args.repeat
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            for _ in range(args.repeat):
                for hub in hubs:
                    done += 1
                    print(f"[{done}/{total}] {scenario} on {hub} ...", end=" ", flush=True)
                    result = run_once(hub, scenario, tmp)
                    raw[scenario][hub].append(result)
                    print(
                        f"{result['updates_per_s']:.0f} updates/s, p99 {result['p99_ms']:.1f} ms"
                        if result["converged"]
                        else "did NOT converge",
                        flush=True,
                    )
    results = {s: {h: median_of(runs) for h, runs in hubs_.items()} for s, hubs_ in raw.items()}
    RESULTS.mkdir(exist_ok=True)
    plot(results, RESULTS / "hub_load.png")
    table = markdown(results)
    headline = []
    for scenario, by_hub in results.items():
        ours = by_hub.get("crdtdoc")
        peers = {h: r for h, r in by_hub.items() if h != "crdtdoc" and r["all_converged"]}
        if ours and peers:
            best = max(peers, key=lambda h: float(peers[h]["updates_per_s"] or 0))  # type: ignore[arg-type]
            headline.append(
                f"{scenario}: crdtdoc {ours['updates_per_s']} updates/s, p99 {ours['p99_ms']} ms; "
                f"fastest peer {best} {peers[best]['updates_per_s']} updates/s, "
                f"p99 {peers[best]['p99_ms']} ms."
            )
    from benchmarks.common import npm_version, package_version, save

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
            "scenarios": {s: SCENARIOS[s] for s in scenarios},
            "headline": headline,
            "median": results,
            "runs": raw,
        },
        "# Hub load (median of runs; see hub_load.json for every run)\n\n" + table,
    )
    print(table)


if __name__ == "__main__":
    main()

"""`hub_load`'s tables, headlines and plot, from the medians of its runs (kept apart from the
running of hubs and clients, in `benchmarks.hub_load`)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.hub_load_scenarios import HUB_ORDER, STORM_UNSUPPORTED, Results, is_storm


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


def dates_note(dates: dict[str, str]) -> str:
    """Which scenarios ran when, if the record merges runs of different days."""
    if len(set(dates.values())) <= 1:
        return ""
    by_date: dict[str, list[str]] = {}
    for scenario, date in dates.items():
        by_date.setdefault(date, []).append(scenario)
    return "Run on " + "; ".join(f"{d}: {', '.join(s)}" for d, s in by_date.items()) + ".\n\n"

"""What history costs, on the automerge-paper editing trace: keeping deleted content, and
reading the past (history, a past version, blame).

The trace (259,778 single-character edits by one typist, see shared/data/SOURCES.md) is replayed
through `Replica.document` twice, side by side in one process, alternating the order: a replica
that keeps history (`Replica(history=True)`, what the hub keeps by default) and one that does not.
Reported: the replay time of each and their ratio, the document's encoded size (what a store
holds and a fresh client downloads) and its ratio, then, on the history replica, the time to
list the text's history (which orders every step of the room), to read the text as it was
halfway through, and to blame the text now and halfway through. Last, what a hub's history
horizon (`crdtdoc serve --history-horizon`) keeps when its horizon falls halfway through the
trace: the size once what was deleted in the first half is collected (`Replica.forget_past`),
and the time that collection takes (one whole-document rebuild).

Run: `python -m benchmarks history` (`--edits N` for a prefix of the trace; `--quick`: the
first 20,000 edits, results kept apart).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import Progress, pyplot, results_dir, save, trace_path
from benchmarks.trace import load_trace, patches


def replay(
    trace: dict[str, Any], history: bool, progress: Progress
) -> tuple[Any, float, list[Any]]:
    """The trace typed into a replica; returns it, the seconds it took, and the versions after
    each tenth of the trace (for reading the past)."""
    import crdtdoc

    edits = patches(trace)
    replica = crdtdoc.Replica(agent="typist", history=history)
    doc = replica.document("text")
    marks = {len(edits) * k // 10 for k in range(1, 10)}
    versions = []
    started = time.perf_counter()
    for k, (pos, deleted, inserted) in enumerate(edits, 1):
        if deleted:
            doc.delete(pos, deleted)
        if inserted:
            doc.insert(pos, inserted)
        if k in marks:
            versions.append(replica.version())
    seconds = time.perf_counter() - started
    progress.step("history" if history else "plain")
    if doc.read() != trace["endContent"]:
        raise RuntimeError("the replayed text differs from the trace's")
    return replica, seconds, versions


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks history", description=__doc__)
    parser.add_argument("--trace", help="automerge-paper.json.gz (default: shared/data)")
    parser.add_argument("--edits", type=int, help="only the trace's first EDITS edits")
    parser.add_argument("--quick", action="store_true", help="the first 20,000 edits")
    args = parser.parse_args()
    edits = 20_000 if args.quick and args.edits is None else args.edits
    trace = load_trace(trace_path(args.trace), edits)
    progress = Progress(8, "history")
    plain, plain_seconds, _ = replay(trace, False, progress)
    kept, kept_seconds, versions = replay(trace, True, progress)
    plain_bytes, kept_bytes = len(plain.encode_update()), len(kept.encode_update())
    middle = versions[len(versions) // 2]
    room, order_seconds = timed(kept.room_history)
    _, steps_seconds = timed(lambda: len(room.steps))
    listed, history_seconds = timed(lambda: kept.history("text", limit=50))
    past, at_seconds = timed(lambda: kept.at(middle).document("text").read())
    progress.step("history and a past version")
    spans, blame_seconds = timed(lambda: kept.document("text").blame())
    progress.step("blame now")
    _, blame_past_seconds = timed(lambda: kept.document("text").blame(at=middle))
    progress.step("blame halfway")
    _, horizon_seconds = timed(lambda: kept.forget_past(middle))
    horizon_bytes = len(kept.encode_update())
    if kept.at(middle).document("text").read() != past:
        raise RuntimeError("the horizon changed what the version at its mark reads")
    progress.step("a horizon halfway")
    ops = len(patches(trace))
    figures = {
        "edits": ops,
        "replay_seconds": {"history": kept_seconds, "plain": plain_seconds},
        "replay_ratio": kept_seconds / plain_seconds,
        "encoded_bytes": {"history": kept_bytes, "plain": plain_bytes},
        "bytes_ratio": kept_bytes / plain_bytes,
        "steps": len(room.steps),
        "history_seconds": history_seconds + order_seconds + steps_seconds,
        "at_seconds": at_seconds,
        "blame_seconds": blame_seconds,
        "blame_past_seconds": blame_past_seconds,
        "blame_spans": len(spans),
        "listed": len(listed),
        "past_characters": len(past),
        "horizon_bytes": horizon_bytes,
        "horizon_ratio": horizon_bytes / plain_bytes,
        "horizon_seconds": horizon_seconds,
    }
    headline = [
        f"Keeping history: {kept_bytes:,} bytes against {plain_bytes:,} "
        f"({figures['bytes_ratio']:.2f}x), replay {figures['replay_ratio']:.2f}x the time.",
        f"Reading the past of {ops:,} edits ({len(room.steps):,} steps): history "
        f"{figures['history_seconds']:.2f} s, a past version {at_seconds:.2f} s, blame "
        f"{blame_seconds:.2f} s now and {blame_past_seconds:.2f} s halfway.",
        f"A horizon halfway: {horizon_bytes:,} bytes ({figures['horizon_ratio']:.2f}x the plain "
        f"document), collected in {horizon_seconds:.2f} s.",
    ]
    table = "\n".join(
        [
            "| measure | with history | without | ratio |",
            "|---|---|---|---|",
            f"| replaying {ops:,} edits (s) | {kept_seconds:.1f} | {plain_seconds:.1f} "
            f"| {figures['replay_ratio']:.2f}x |",
            f"| encoded document (bytes) | {kept_bytes:,} | {plain_bytes:,} "
            f"| {figures['bytes_ratio']:.2f}x |",
            f"| encoded document, past kept from halfway only (a history horizon; bytes) "
            f"| {horizon_bytes:,} | {plain_bytes:,} | {figures['horizon_ratio']:.2f}x |",
            "",
            "| reading the past (history replica) | seconds |",
            "|---|---|",
            f"| `history('text', limit=50)` (orders all {len(room.steps):,} steps) "
            f"| {figures['history_seconds']:.2f} |",
            f"| `at(halfway).document('text').read()` | {at_seconds:.2f} |",
            f"| `blame()` now ({len(spans):,} spans) | {blame_seconds:.2f} |",
            f"| `blame(at=halfway)` | {blame_past_seconds:.2f} |",
            f"| `forget_past(halfway)` (what a horizon does once per mark) "
            f"| {horizon_seconds:.2f} |",
            "",
        ]
    )
    folder = results_dir(args.quick)
    save(
        "history",
        {"figures": figures, "headline": headline, "quick": args.quick},
        "# History\n\n" + table,
        folder,
    )
    plot(figures, folder)
    print("\n".join(headline))


def plot(figures: dict[str, Any], folder: Any) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.bar(
        ["plain", "history", "horizon halfway"],
        [
            figures["encoded_bytes"]["plain"] / 1024,
            figures["encoded_bytes"]["history"] / 1024,
            figures["horizon_bytes"] / 1024,
        ],
        color=["#999", "#48c", "#8ac"],
    )
    left.set_ylabel("encoded document (KiB)")
    names = ["history list", "past version", "blame now", "blame halfway"]
    values = [
        figures["history_seconds"],
        figures["at_seconds"],
        figures["blame_seconds"],
        figures["blame_past_seconds"],
    ]
    right.bar(names, values, color="#48c")
    right.set_ylabel("seconds")
    right.tick_params(axis="x", labelrotation=20)
    fig.suptitle(f"History on the editing trace ({figures['edits']:,} edits)")
    fig.tight_layout()
    fig.savefig(folder / "history.png")


if __name__ == "__main__":
    main()

"""The gate-cost benchmark's own measures: segments, summaries, instruction counts, and that
every variant (and the subprocess worker) runs against this tree's API."""

from __future__ import annotations

import pickle
from pathlib import Path

from benchmarks.gate_cost import (
    BREAKDOWN,
    VARIANTS,
    _child,
    callgrind_total,
    gate_breakdown,
    instruction_table,
    ratios,
    segments,
    summarize,
    time_variant,
    transaction_sized,
)


def test_segments_cover_every_update_once() -> None:
    assert segments(10) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert segments(1) == [(0, 1)]
    assert segments(7, 1) == [(0, 7)]
    assert sum(end - start for start, end in segments(20_001)) == 20_001


def test_summaries_and_ratios_from_known_seconds() -> None:
    # 4 updates in quarters: 1 µs each for raw; trusted 10; gated 30 then 50 in the last quarter.
    quarter = {"raw": [1e-6] * 4, "trusted": [10e-6] * 4, "gated": [30e-6] * 3 + [50e-6]}
    quarter |= {"hub": [40e-6] * 4, "hub gate": [20e-6] * 4}
    runs = {"c": {v: [quarter[v], quarter[v]] for v in VARIANTS}}
    summary = summarize(runs, {"c": 4})
    assert summary["c"]["gated"]["median"] == 35.0
    assert summary["c"]["gated"]["last_quarter"]["best"] == 50.0
    sides = {"old": {"c": {"replica": {"median": 7.0, "best": 7.0}}}}
    sides["new"] = {
        "c": {"replica": {"median": 35.0, "best": 30.0}, "trusted": {"median": 10.0, "best": 9.0}}
    }
    derived = ratios(summary, sides)["c"]
    assert derived["gated_over_trusted"] == 3.5
    assert derived["gate_us"] == 25.0
    assert derived["new_over_old"] == 5.0
    assert derived["gated_over_trusted_best"] == 3.5  # both repeats alike: best = median
    growth = derived["last_over_first_quarter"]
    assert (growth["gate_us_first_quarter"], growth["gate_us_last_quarter"]) == (20.0, 40.0)
    assert growth["gate_us"] == 2.0


def test_instruction_counts_subtract_the_baseline_of_their_tree() -> None:
    assert callgrind_total("events: Ir\nsummary: 1234\n") == 1234
    assert callgrind_total("totals: 99\n") == 99
    counts = {"new none": 100, "new gated": 500, "old none": 50, "old replica": 250}
    table = instruction_table(counts, 4)
    assert table == {
        "new gated": {"instructions": 400, "per_update": 100},
        "old replica": {"instructions": 200, "per_update": 50},
    }


def test_every_variant_applies_the_workload(tmp_path: Path) -> None:
    updates = transaction_sized(40)
    assert updates == transaction_sized(40)  # seeded, client ids too: the same bytes every run
    for variant in VARIANTS:
        spent = time_variant(variant, updates, parts=4)
        assert len(spent) == 4 and all(s >= 0 for s in spent)
    pieces = gate_breakdown(updates)
    assert list(pieces) == BREAKDOWN and all(s > 0 for s in pieces.values())
    data = tmp_path / "workloads.pickle"
    data.write_bytes(pickle.dumps({"a": updates[:10]}))
    tree = Path(__file__).resolve().parents[2]
    out = _child(tree, "worker", [str(data), "1", "raw", "trusted", "replica"])
    assert '"crdtdoc": "' + str(tree) in out

"""The benchmarks' own measures: if these count wrong, the published tables are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.partitions import apart, groups_for, lost_updates, missing_bytes
from benchmarks.strategies import HOT, Outcome, workload
from crdtdoc import Replica


def test_lost_notes_and_stale_decisions_are_counted_from_the_final_lists() -> None:
    outcome = Outcome(tasks=4)
    # a read nothing, b read nothing (concurrently), c read a's note, d's write was lost.
    outcome.seen = {"a": 0, "b": 0, "c": 1, "d": 0}
    outcome.judge({HOT: ["a", "b", "c"]}, {"a", "b", "c", "d"})
    assert outcome.lost == 1
    assert outcome.stale == 2  # b landed after a, which b never read; c after b, likewise


def test_the_workload_is_seeded_and_the_conflict_rate_is_respected() -> None:
    assert workload(4, 50, 0.3, seed=1) == workload(4, 50, 0.3, seed=1)
    hot = sum(t.field == HOT for tasks in workload(4, 500, 0.3, seed=2) for t in tasks)
    assert 500 < hot < 700  # 30% of 2,000
    assert all(t.field == HOT for tasks in workload(3, 10, 1.0, seed=3) for t in tasks)


def test_partition_measures() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    made: list[bytes] = []
    alice.on_update(lambda u, local: made.append(u) if local else None)
    alice.document("d").insert(0, "hello")
    alice.document("d").delete(0, 1)
    assert lost_updates(made, bob.version()) == len(made)  # bob has none of them
    bob.apply_update(alice.encode_update())
    assert lost_updates(made, bob.version()) == 0
    assert missing_bytes(alice, [bob.version()]) == 0
    assert missing_bytes(alice, [Replica("carol").version()]) > 0
    assert groups_for("isolated", 10) == ([9], list(range(9)))
    assert [apart(step, 9) for step in range(9)] == [True] * 3 + [False] * 3 + [True] * 3


def test_quick_runs_never_overwrite_the_recorded_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--quick` smoke runs write under results/quick/ and leave RESULTS.md alone."""
    from benchmarks import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    folder = common.results_dir(quick=True)
    assert folder == tmp_path / "quick" and folder.is_dir()
    common.save("smoke", {"quick": True}, "# smoke\n", folder)
    assert (folder / "smoke.json").is_file() and not (tmp_path / "smoke.json").exists()
    assert common.results_dir(quick=False) == tmp_path


def test_every_benchmark_answers_help_without_running() -> None:
    from benchmarks.__main__ import BENCHMARKS, main

    for name in BENCHMARKS:
        if name == "report":
            continue
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0, name

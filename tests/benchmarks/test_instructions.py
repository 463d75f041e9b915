"""The instruction-count benchmark's reading of callgrind: if these are wrong, its table is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import instructions
from benchmarks.instructions import (
    Count,
    _markdown,
    dump_files,
    loop_instructions,
    parse_ir,
    read_updates,
    rows_of,
    seeded_client_ids,
    write_updates,
)
from crdtdoc import Replica

# The head and tail of a real dump (valgrind 3.19, --dump-after), the body shortened.
DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 7301
cmd:  /work/venv/bin/python -m benchmarks.instructions --child compiled /tmp/w.bin
part: 2


desc: I1 cache:
desc: D1 cache:
desc: LL cache:

desc: Timerange: Basic block 4310553 - 9152211
desc: Trigger: Program termination

positions: line
events: Ir
summary: 32974146


ob=(3) /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
fl=(1) Python/ceval.c
fn=(10) _PyEval_EvalFrameDefault
0 1234

totals: 32974146
"""

# With --cache-sim=yes, Ir is one event of several, and totals differ from a stale summary.
CACHE_SIM = """\
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
summary: 999 1 1 2 2 2 3 3 3
fn=(1) main
16 5 1 1
totals: 1200 4 3 500 20 10 300 7 6
"""


def test_the_ir_total_is_read_from_the_totals_line() -> None:
    assert parse_ir(DUMP) == 32974146
    assert parse_ir(CACHE_SIM) == 1200  # the Ir column of totals:, not summary: nor Dr


def test_ir_is_found_by_its_position_among_the_events() -> None:
    assert parse_ir("events: Dr Ir\ntotals: 7 40\n") == 40
    assert parse_ir("events: Ir\nsummary: 55\n") == 55  # no totals: line: the summary
    assert parse_ir("events: Dr Ir\ntotals: 7\n") == 0  # trailing zero counts may be omitted


@pytest.mark.parametrize(
    "text", ["", "totals: 5\n", "events: Ir\nfn=(1) main\n0 5\n", "events: Dr\ntotals: 5\n"]
)
def test_what_is_not_a_dump_with_ir_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ir(text)


def test_the_empty_loop_is_subtracted_before_dividing() -> None:
    assert loop_instructions(loop_ir=100_939, baseline_ir=939, updates=1000) == 100.0
    assert loop_instructions(loop_ir=939, baseline_ir=939, updates=1) == 0.0
    with pytest.raises(ValueError):
        loop_instructions(loop_ir=10, baseline_ir=939, updates=1)  # dumps swapped
    with pytest.raises(ValueError):
        loop_instructions(loop_ir=10, baseline_ir=0, updates=0)


def test_dumps_are_taken_in_numeric_order(tmp_path: Path) -> None:
    out = tmp_path / "cg.out"
    for name in ["cg.out", "cg.out.log", "cg.out.10", "cg.out.2", "cg.out.1", "cg.outx.3"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in dump_files(out)] == ["cg.out.1", "cg.out.2", "cg.out.10"]


def test_the_updates_file_round_trips(tmp_path: Path) -> None:
    updates = [b"", b"\x00\x01", bytes(range(256)) * 300]
    write_updates(tmp_path / "w.bin", updates)
    assert read_updates(tmp_path / "w.bin") == updates
    (tmp_path / "cut.bin").write_bytes((tmp_path / "w.bin").read_bytes()[:-1])
    with pytest.raises(ValueError):
        read_updates(tmp_path / "cut.bin")


def test_seeded_client_ids_repeat_and_are_restored() -> None:
    with seeded_client_ids():
        first = [Replica("a").client_id, Replica("b").client_id]
    with seeded_client_ids():
        again = [Replica("a").client_id, Replica("b").client_id]
    assert first == again and first[0] != first[1]
    assert Replica("c").client_id not in first  # secrets again outside


def test_without_valgrind_it_says_so_and_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(sys, "argv", ["benchmarks instructions"])
    with pytest.raises(SystemExit) as exited:
        instructions.main()
    assert "valgrind is not installed" in str(exited.value.code)


def test_rows_subtract_each_side_baseline_and_mark_an_inactive_compiled_path() -> None:
    chosen = [("w", [b"ab", b"abcd", b"abcdef", b"a"])]
    counts = [
        Count("w", "raw", 4, baseline_ir=900, loop_ir=900 + 4 * 1000, hot_path="-", compiled=True),
        Count("w", "compiled", 4, 1000, 1000 + 4 * 3000, "compiled", compiled=False),
        Count("w", "pure", 4, 1100, 1100 + 4 * 6000, "pure", compiled=False),
    ]
    [row] = rows_of(chosen, counts)
    assert row["raw_pycrdt_ir_per_update"] == 1000
    assert row["replica_ir_per_update"] == 3000
    assert row["pure_replica_ir_per_update"] == 6000
    assert (row["replica_over_raw"], row["pure_replica_over_raw"]) == (3.0, 6.0)
    assert row["compiled_over_pure"] == 0.5
    assert row["median_update_bytes"] == 4
    assert row["compiled_active"] is False
    table = _markdown([row], compiled_active=False)
    assert "| w | 4 | 4 | 1,000 | 3,000 † | 3.0 † | 6,000 | 6.0 | 0.5 † |" in table

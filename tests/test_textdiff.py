from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import textdiff

small = st.text(alphabet="ab😀c", max_size=25)


def _edit_distance(a: str, b: str) -> int:
    """Insert/delete distance by dynamic programming (the oracle)."""
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = prev[j - 1] if a[i - 1] == b[j - 1] else 1 + min(prev[j], cur[j - 1])
        prev = cur
    return prev[len(b)]


@given(small, small)
def test_diff_is_correct_and_minimal(a: str, b: str) -> None:
    edits = textdiff.diff(a, b)
    assert textdiff.apply(a, edits) == b
    assert sum(e.delete + len(e.insert) for e in edits) == _edit_distance(a, b)
    positions = [e.index for e in edits]
    assert positions == sorted(positions)


def test_large_distance_falls_back_and_stays_correct() -> None:
    a = "ab" * 3000
    b = "ba" * 2000 + "c" * 2500
    assert textdiff.apply(a, textdiff.diff(a, b)) == b

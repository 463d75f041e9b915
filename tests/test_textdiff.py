from __future__ import annotations

import itertools

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


@given(small, small)
def test_readable_edits_are_correct_ordered_and_disjoint(a: str, b: str) -> None:
    edits = textdiff.readable(a, b)
    assert textdiff.apply(a, edits) == b
    for first, second in itertools.pairwise(edits):
        gap = second.index - (first.index + first.delete)
        assert gap > 0  # disjoint, with something kept between
        sizes = (max(first.delete, len(first.insert)), max(second.delete, len(second.insert)))
        assert gap > min(sizes)  # short kept stretches are folded in


def test_a_replaced_word_is_one_edit_not_letters() -> None:
    assert textdiff.diff("The Final review", "The Closing review") != [
        textdiff.Edit(4, 5, "Closing")
    ]  # the minimal script keeps shared letters
    assert textdiff.readable("The Final review", "The Closing review") == [
        textdiff.Edit(4, 5, "Closing")
    ]


def test_an_added_line_goes_after_the_last_line_break() -> None:
    old = "Plan\nOwner: Alice\n"
    edits = textdiff.readable(old, "Plan v2\nOwner: Alice\nNext step: ship.\n")
    assert edits == [textdiff.Edit(4, 0, " v2"), textdiff.Edit(len(old), 0, "Next step: ship.\n")]


def test_a_stretch_holding_the_anchor_is_never_folded() -> None:
    old, new = "x\ufffcy", "a\ufffcb"
    assert textdiff.readable(old, new) == [textdiff.Edit(0, 3, "a\ufffcb")]
    assert textdiff.readable(old, new, "\ufffc") == [
        textdiff.Edit(0, 1, "a"),
        textdiff.Edit(2, 1, "b"),
    ]


def test_beyond_the_exact_bound_whole_words_are_replaced() -> None:
    """Past MAX_EXACT_EDIT_DISTANCE changed characters the search goes by word (then by line,
    then one replacement), so its cost stays bounded and the edits stay readable."""
    words = [f"word{i % 7}" for i in range(3000)]
    old = " ".join(words)
    new = " ".join(w.upper() if i % 5 == 0 else w for i, w in enumerate(words))
    edits = textdiff.diff(old, new)
    assert textdiff.apply(old, edits) == new
    assert sum(e.delete + len(e.insert) for e in edits) > textdiff.MAX_EXACT_EDIT_DISTANCE
    assert all(old[e.index : e.index + e.delete].startswith("word") for e in edits)
    assert len(edits) == 600

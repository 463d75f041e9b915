"""Minimal edit scripts between two strings (Myers' O(ND) algorithm), for whole-text writes.

An agent that rewrites a document should change only what it changed, so concurrent edits by
others elsewhere in the text survive the merge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_EXACT_EDIT_DISTANCE = 2000
"""Up to this many inserted plus deleted characters the script is minimal; beyond, whole words
(or lines) are replaced, so the cost stays bounded."""


@dataclass(frozen=True, slots=True)
class Edit:
    """Delete `delete` characters at `index` of the old text, then insert `insert` there."""

    index: int
    delete: int
    insert: str


def span(old: str, new: str) -> list[Edit]:
    """At most one edit turning `old` into `new`: the stretch between their common prefix and
    suffix (where `diff` then searches)."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    deleted = len(old) - suffix - prefix
    inserted = new[prefix : len(new) - suffix]
    return [Edit(prefix, deleted, inserted)] if deleted or inserted else []


def diff(old: str, new: str) -> list[Edit]:
    """Edits turning `old` into `new`, ordered by index in `old`, non-overlapping."""
    edits = span(old, new)
    if not edits or not edits[0].delete or not edits[0].insert:
        return edits  # nothing, or a pure insertion or deletion
    (stretch,) = edits
    a, b = old[stretch.index : stretch.index + stretch.delete], stretch.insert
    ops = _myers(a, b)
    if ops is None:
        ops = _coarse_ops(a, b)
    return [Edit(stretch.index + i, d, s) for i, d, s in ops]


def readable(old: str, new: str, anchor: str = "") -> list[Edit]:
    """Edits turning `old` into `new` as a person would make them: the minimal script, with
    short kept stretches between edits folded into them (no word replaced letter by letter,
    keeping a stray shared letter and its formatting; diff-match-patch's semantic cleanup), and
    an insertion of whole lines placed after a line break rather than before it (so the line
    above keeps its own line end, which is where editors keep a line's block format). A kept
    stretch holding `anchor` (U+FFFC: an embed) is never folded into an edit."""
    edits = diff(old, new)
    while True:  # a fold makes an edit bigger, which may let it fold with the one before
        folded = _fold(old, edits, anchor)
        if len(folded) == len(edits):
            break
        edits = folded
    return [
        _after_line_break(old, e, edits[n + 1].index if n + 1 < len(edits) else len(old))
        for n, e in enumerate(edits)
    ]


def _fold(old: str, edits: list[Edit], anchor: str) -> list[Edit]:
    """Merges neighbouring edits whose kept stretch between them is no longer than either (and
    holds no `anchor`)."""
    out: list[Edit] = []
    for edit in edits:
        if out:
            last = out[-1]
            gap = edit.index - (last.index + last.delete)
            kept = old[last.index + last.delete : edit.index]
            if (
                gap <= max(last.delete, len(last.insert))
                and gap <= max(edit.delete, len(edit.insert))
                and not (anchor and anchor in kept)
            ):
                out[-1] = Edit(
                    last.index, last.delete + gap + edit.delete, last.insert + kept + edit.insert
                )
                continue
        out.append(edit)
    return out


def _after_line_break(old: str, edit: Edit, limit: int) -> Edit:
    """A pure insertion slid right over equal characters (same result) to just after a line
    break, if there is one to reach before `limit` (the next edit)."""
    if edit.delete or "\n" not in edit.insert:
        return edit
    index, text = edit.index, edit.insert
    while index < limit and old[index] == text[0]:
        text = text[1:] + text[0]
        index += 1
        if old[index - 1] == "\n":
            return Edit(index, 0, text)
    return edit


def _merge(ops: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for i, d, s in ops:
        if out and out[-1][0] + out[-1][1] == i:
            pi, pd, ps = out[-1]
            out[-1] = (pi, pd + d, ps + s)
        else:
            out.append((i, d, s))
    return out


def _myers(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int, str]] | None:
    n, m = len(a), len(b)
    max_d = min(n + m, MAX_EXACT_EDIT_DISTANCE)
    offset = max_d + 1
    v = [0] * (2 * max_d + 3)
    trace: list[list[int]] = []
    for d in range(max_d + 1):
        trace.append(v[offset - d - 1 : offset + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]
            else:
                x = v[offset + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[offset + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, a, b, d)
    return None


def _backtrack(
    trace: list[list[int]], a: Sequence[str], b: Sequence[str], d_final: int
) -> list[tuple[int, int, str]]:
    x, y = len(a), len(b)
    ops: list[tuple[int, int, str]] = []
    for d in range(d_final, 0, -1):
        snapshot = trace[d]  # v before step d, covering k in [-d-1, d+1]

        def get(k: int, snap: list[int] = snapshot, d: int = d) -> int:
            return snap[k + d + 1]

        k = x - y
        # Down (k + 1) is an insertion of b[prev_y]; right (k - 1) a deletion of a[prev_x].
        came_down = k == -d or (k != d and get(k - 1) < get(k + 1))
        prev_k = k + 1 if came_down else k - 1
        prev_x = get(prev_k)
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:
            x -= 1
            y -= 1
        if prev_k == k + 1:
            ops.append((prev_x, 0, b[prev_y]))
        else:
            ops.append((prev_x, 1, ""))
        x, y = prev_x, prev_y
    ops.reverse()
    return _merge(ops)


_WORDS = re.compile(r"\s+|[^\s]+")


def _coarse_ops(a: str, b: str) -> list[tuple[int, int, str]]:
    """The fallback when the texts differ in too many characters: whole words replaced, else
    whole lines, found by the same bounded search (each try costs time linear in the texts'
    size, where an unbounded character diff grows with their product); else one replacement."""
    for split in (_WORDS.findall, lambda text: text.splitlines(keepends=True)):
        old_tokens, new_tokens = split(a), split(b)
        ops = _myers(old_tokens, new_tokens)
        if ops is not None:
            starts = [0]
            for token in old_tokens:
                starts.append(starts[-1] + len(token))
            return [(starts[i], starts[i + d] - starts[i], s) for i, d, s in ops]
    return [(0, len(a), b)]


def apply(text: str, edits: list[Edit]) -> str:
    """Applies `edits` (as returned by `diff`) to `text`."""
    out = []
    pos = 0
    for e in edits:
        out.append(text[pos : e.index])
        out.append(e.insert)
        pos = e.index + e.delete
    out.append(text[pos:])
    return "".join(out)

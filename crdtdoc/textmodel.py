"""How crdtdoc shows and addresses a shared text: characters, embeds and formats, by code point.

A Y.Text holds strings, embeds (a Quill image, Yjs `insertEmbed`), embedded shared types and
formats. Yjs gives a string one position per UTF-16 unit and an embed or embedded type one
position; a format takes none. pycrdt (yrs) addresses the same sequence by UTF-8 byte, with one
unit per embed. crdtdoc shows the text as a `str` in which each embed is U+FFFC (OBJECT
REPLACEMENT CHARACTER, `EMBED`), so every index an agent computes on what it read is a position
in the shared text, counted in code points as Python counts (an emoji is one here, two in Yjs).
`TextView.offset` turns such an index into the engine's offset, always on a boundary.

`EMBED` in text an agent writes would create a character that reads exactly like an embed, so
edits refuse it (`check_insertable`); `plan` keeps every embed outside the span an agent changed.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final, TypeVar

from crdtdoc import textdiff
from crdtdoc.errors import InvalidValue, StaleRead
from crdtdoc.textdiff import Edit

_V = TypeVar("_V")

EMBED: Final = "\ufffc"
"""How `Document.read()` shows an embed or embedded type: one position, as in the shared text."""


@dataclass(frozen=True, slots=True)
class TextView:
    """A text as `Document.read()` shows it, and where its embeds are."""

    text: str
    embeds: tuple[int, ...] = ()
    """Indices in `text` that are embeds (ascending); other U+FFFC there are characters."""
    plain: bool = True
    """Whether the engine holds only characters (no embed, nor content of another type's)."""
    exact: bool = True
    """Whether every position is known (not so when the engine holds content `diff` does not
    show or shows wrongly, like a value or a string embed stored before they were refused):
    then only the end (`end`, the engine's length) is a known place."""
    end: int = field(default=0, compare=False)

    def offset(self, index: int) -> int:
        """The engine (pycrdt) offset of code point `index`, 0 <= index <= len(text)."""
        text = self.text
        if not self.exact and index == len(text):
            return self.end
        if not self.embeds:
            return index if text.isascii() else len(text[:index].encode("utf-8"))
        # U+FFFC takes 3 UTF-8 bytes; an embed takes one engine unit.
        return len(text[:index].encode("utf-8")) - 2 * bisect_left(self.embeds, index)

    def inserted(self, index: int, text: str) -> TextView:
        """This view after inserting `text` (no embeds) before `index`."""
        shift = len(text)
        embeds = tuple(p + shift if p >= index else p for p in self.embeds)
        end = self.end if self.exact else self.end + len(text.encode("utf-8"))
        return TextView(
            self.text[:index] + text + self.text[index:], embeds, self.plain, self.exact, end
        )

    def deleted(self, index: int, length: int) -> TextView:
        """This view after deleting `length` positions at `index` (of an exact view)."""
        end = index + length
        embeds = tuple(p - length if p >= end else p for p in self.embeds if not index <= p < end)
        return TextView(self.text[:index] + self.text[end:], embeds, self.plain)


def check_insertable(text: str, what: str) -> None:
    """Refuses text holding `EMBED`: it would read as an embed that is not one."""
    if EMBED in text:
        raise InvalidValue(
            f"{what} holds U+FFFC, which read() uses to show an embed (an image, an embedded "
            "object); crdtdoc cannot create or move embeds through text: keep each U+FFFC where "
            "read() showed it, or delete it to delete the embed"
        )


def plan(old: str, new: str, what: str) -> list[Edit]:
    """Edits turning `old` into `new` (ordered, non-overlapping; `textdiff.readable`) that insert
    no `EMBED`: every character kept keeps its identity and formatting.

    A diff that would delete a U+FFFC and insert one elsewhere either moves an embed or merely
    aligns identical placeholders differently. When `new` keeps as many U+FFFC as `old` has and
    keeping each where it is costs no more edits, the stretches between them are diffed one by
    one; otherwise the write moves or adds an embed, and `InvalidValue` is raised before
    anything changes (text re-typed around an image would lose its formatting and identity).
    """
    edits = textdiff.readable(old, new, EMBED)
    if not any(EMBED in e.insert for e in edits):
        return edits
    count = old.count(EMBED)
    if count and new.count(EMBED) == count:
        kept: list[Edit] = []
        base = 0
        for old_part, new_part in zip(old.split(EMBED), new.split(EMBED), strict=True):
            kept.extend(
                Edit(base + e.index, e.delete, e.insert)
                for e in textdiff.readable(old_part, new_part, EMBED)
            )
            base += len(old_part) + 1
        if _cost(kept) <= _cost(edits):
            return kept
    moved_at = next(e.index for e in edits if EMBED in e.insert)
    raise InvalidValue(
        f"{what} moves or adds an embed (U+FFFC, near position {moved_at} of the text read); "
        "crdtdoc cannot create or move embeds through text: keep each U+FFFC where read() "
        "showed it (the text around it may change), or leave one out to delete that embed"
    )


def _cost(edits: list[Edit]) -> int:
    return sum(e.delete + len(e.insert) for e in edits)


def moved(positions: dict[int, _V], edits: list[Edit]) -> dict[int, _V]:
    """`positions` (of the old text) where they are after `edits` (ordered, non-overlapping);
    those inside a deleted span are gone. One pass over both, in order."""
    out: dict[int, _V] = {}
    shift = 0
    pending = iter(edits)
    edit = next(pending, None)
    for at in sorted(positions):
        while edit is not None and edit.index + edit.delete <= at:
            shift += len(edit.insert) - edit.delete  # wholly before `at` (or inserted at it)
            edit = next(pending, None)
        if edit is None or at < edit.index:
            out[at + shift] = positions[at]
        # else: edit.index <= at < its end: deleted
    return out


def rebase(mine: list[Edit], theirs: list[Edit], base: str = "") -> list[Edit]:
    """`mine` (edits of `base`, the text as an agent read it) moved onto the text as it is now,
    which `theirs` (edits of `base` too) made; both ordered and non-overlapping. Raises
    `StaleRead` when one of mine touches text theirs changed: it deletes across their edit,
    or inserts inside what they deleted. Where both insert at one place, theirs come first.
    `theirs` is a guess from the texts alone; when others added an embed and mine deletes one,
    which is which cannot be told (all read as U+FFFC), so that too raises `StaleRead`. With
    `base`, so does an edit of mine within a word theirs changed (between the same whitespace):
    merged letter by letter, "UUIDs" edited to "ULIDs" and to "UUIDv7s" would read "ULIDv7s",
    a word neither wrote; only two insertions at one place are both kept."""
    if any(EMBED in t.insert for t in theirs) and any(
        EMBED in base[m.index : m.index + m.delete] for m in mine
    ):
        raise StaleRead(
            "others added an embed since you read the text, and this write deletes one: which "
            "is which cannot be told; read it again and redo the edit (nothing was changed)",
            [],
        )
    if base:
        _refuse_same_word(mine, theirs, base)
    out: list[Edit] = []
    shift = 0
    pending = iter(theirs)
    other = next(pending, None)
    for edit in mine:
        while other is not None and other.index + other.delete <= edit.index:
            shift += len(other.insert) - other.delete  # wholly before mine
            other = next(pending, None)
        # Touched: my deletion reaches their edit, or my insertion falls inside their deletion.
        reach = edit.index + edit.delete if edit.delete else edit.index
        if other is not None and other.index < reach:
            raise StaleRead(
                f"others changed the text around position {edit.index} of what you read since "
                "you read it; read it again and redo this edit (nothing was changed)",
                [],
            )
        out.append(Edit(edit.index + shift, edit.delete, edit.insert))
    return out


def _word_span(base: str, edit: Edit) -> tuple[int, int]:
    """The stretch of `base` an edit touches, widened to the whitespace around it."""
    lo, hi = edit.index, edit.index + edit.delete
    while lo > 0 and not base[lo - 1].isspace():
        lo -= 1
    while hi < len(base) and not base[hi].isspace():
        hi += 1
    return lo, hi


def _refuse_same_word(mine: list[Edit], theirs: list[Edit], base: str) -> None:
    """Raises `StaleRead` if an edit of mine and one of theirs touch one word of `base` (both
    lists are ordered, so one pass over each)."""
    spans = [(_word_span(base, t), t) for t in theirs]
    first = 0
    for edit in mine:
        lo, hi = _word_span(base, edit)
        while first < len(spans) and spans[first][0][1] <= lo:
            first += 1  # ends before this edit's word: before every later one's too
        for (their_lo, their_hi), other in spans[first:]:
            if their_lo >= hi:
                break
            both_insert_here = not edit.delete and not other.delete and edit.index == other.index
            if max(lo, their_lo) < min(hi, their_hi) and not both_insert_here:
                raise StaleRead(
                    f"others changed the word at position {edit.index} of what you read since "
                    "you read it, and so did this write; read it again and redo this edit "
                    "(nothing was changed)",
                    [],
                )

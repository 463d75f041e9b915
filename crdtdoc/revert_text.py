"""Planning a revert of one agent's work in a text, and who did what since when (`Scope`).

See `crdtdoc.revert`: each live stretch the agent wrote since the version is deleted (unless
someone else wrote inside it), and each stretch it deleted is written again, as a copy, right
after the text it followed when it was written. Positions come from the engine's relative
positions of the stretches, so the plan is in positions of the text as `read()` shows it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdtdoc import textdiff
from crdtdoc.changes import utf16_range
from crdtdoc.contents import EMBED, STRING, TYPE
from crdtdoc.idset import IdSet
from crdtdoc.updates import Item
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.history import RoomHistory

Id = tuple[int, int]
TEXT_KINDS = (STRING, EMBED, TYPE)


@dataclass
class Scope:
    """Whose work since when: `clients` (one agent's client ids) from `since`."""

    clients: frozenset[int]
    since: Version
    wrote_deletions: IdSet = field(default_factory=IdSet)  # what they deleted since then
    others_deleted: IdSet = field(default_factory=IdSet)  # what anyone else deleted, ever

    def wrote(self, client: int, clock: int) -> bool:
        return client in self.clients and clock >= self.since.clocks.get(client, 0)


def scope_of(room: RoomHistory, clients: frozenset[int], since: Version) -> Scope:
    """The scope, with the deletions log read for who deleted what."""
    scope = Scope(clients, since)
    for client, clock, ds in room.doc.deleters:
        if scope.wrote(client, clock):
            scope.wrote_deletions.update(ds)
        elif client not in clients:
            scope.others_deleted.update(ds)
    return scope


@dataclass
class TextPlan:
    """The edits that revert one text, in positions of its current `read()`."""

    edits: list[textdiff.Edit]
    removed: int
    restored: int
    kept: list[str]


def plan_text(room: RoomHistory, scope: Scope, name: str, offsets: Any, text: str) -> TextPlan:
    """The edits reverting `scope` in the text root `name` (whose `read()` is `text`);
    `offsets(ids)` gives the engine offset of live item ids (`Replica.text_offsets`)."""
    index, deleted = room.doc.index, room.deleted
    items = [
        i
        for i in room.doc.items
        if i.content in TEXT_KINDS
        and index.root(i) == name
        and index.sub(i) is None
        and not index.path(i)
    ]
    live: list[tuple[Item, int, int]] = []  # (item, lo, hi): live stretches, any author
    for item in items:
        for lo, hi in deleted.gaps(item.client, item.clock, item.clock + item.length):
            live.append((item, lo, hi))
    order = offsets([(item.client, lo) for item, lo, _ in live])
    live = [piece for _, piece in sorted(zip(order, live, strict=True), key=lambda p: p[0])]
    starts: dict[Id, int] = {}  # (client, lo) of each live stretch -> its index in `text`
    position = 0
    for item, lo, hi in live:
        starts[(item.client, lo)] = position
        position += len(_shown(item, lo, hi))
    if position != len(text):
        return TextPlan([], 0, 0, [f"{name}: its positions could not be read; nothing changed"])

    stretches = Stretches(live)

    def index_after(ref: Id | None) -> int | None:
        """The index in `text` just after the live character `ref` (None if not live)."""
        if ref is None:
            return 0
        found = stretches.holding(ref)
        if found is None:
            return None
        item, lo, _ = found
        return starts[(item.client, lo)] + len(_shown(item, lo, ref[1] + 1))

    # Others' live stretches written inside ours pin the stretches around them.
    ours = [(i, lo, hi) for i, lo, hi in live if scope.wrote(i.client, lo)]
    pinned: set[Id] = set()
    kept: list[str] = []
    for item, _, _ in live:
        if scope.wrote(item.client, item.clock):
            continue
        inside = [r for r in (item.origin, item.right_origin) if r and scope.wrote(*r)]
        if len(inside) < 2:
            continue
        for ref in inside:
            found = stretches.holding(ref)
            if found is not None and (found[0].client, found[1]) not in pinned:
                pinned.add((found[0].client, found[1]))
                kept.append(f"{name}: {_short(_shown(*found))} (someone else wrote inside it)")
    edits: list[textdiff.Edit] = []
    removed = 0
    for item, lo, hi in ours:
        if (item.client, lo) in pinned:
            continue
        shown = _shown(item, lo, hi)
        edits.append(textdiff.Edit(starts[(item.client, lo)], len(shown), ""))
        removed += len(shown)

    # What they deleted comes back after the text it followed, as a copy.
    back: list[tuple[Item, int, int]] = []
    gone = scope.wrote_deletions.difference(scope.others_deleted)
    for item in items:
        for lo, hi in _within(gone, item):
            if scope.wrote(item.client, lo) or not deleted.contains(item.client, lo):
                continue  # their own writing, or written back already
            if item.content != STRING:
                kept.append(f"{name}: an embed they deleted cannot be written back")
                continue
            back.append((item, lo, hi))
    chains = _chains(back)
    restored = 0
    for chain in chains:
        head, head_lo, _ = chain[0]
        anchor = (head.client, head_lo - 1) if head_lo > head.clock else head.origin
        at = None
        while at is None:
            at = index_after(anchor)
            if at is None:
                holder = index.find(*anchor) if anchor is not None else None
                anchor = holder.origin if holder is not None else None
                if holder is None:
                    at = 0
        restored_text = "".join(_shown(i, lo, hi) for i, lo, hi in chain)
        edits.append(textdiff.Edit(at, 0, restored_text))
        restored += len(restored_text)
    return TextPlan(_merged(edits), removed, restored, kept)


def _merged(edits: list[textdiff.Edit]) -> list[textdiff.Edit]:
    """Sorted, non-overlapping edits: an insertion that falls inside a deletion moves to its
    start (the text around it is being taken out)."""
    deletions = sorted((e for e in edits if e.delete), key=lambda e: e.index)
    out: dict[int, list[Any]] = {}  # index -> [delete, insert]
    for e in deletions:
        out.setdefault(e.index, [0, ""])[0] += e.delete
    for e in sorted((e for e in edits if not e.delete), key=lambda e: e.index):
        at = e.index
        for d in deletions:
            if d.index < at < d.index + d.delete:
                at = d.index
        out.setdefault(at, [0, ""])[1] += e.insert
    return [textdiff.Edit(at, d, s) for at, (d, s) in sorted(out.items())]


def _chains(back: list[tuple[Item, int, int]]) -> list[list[tuple[Item, int, int]]]:
    """Deleted stretches grouped into runs that followed one another when written (a stretch
    whose origin is the last character of another comes right after it)."""
    ends = {(i.client, hi - 1): n for n, (i, _, hi) in enumerate(back)}
    follows: dict[int, int] = {}
    for n, (item, lo, _) in enumerate(back):
        before = (item.client, lo - 1) if lo > item.clock else item.origin
        if before in ends and ends[before] != n:
            follows[ends[before]] = n
    heads = set(range(len(back))) - set(follows.values())
    chains = []
    for head in sorted(heads):
        chain, at, seen = [back[head]], head, {head}
        while at in follows and follows[at] not in seen:
            at = follows[at]
            seen.add(at)
            chain.append(back[at])
        chains.append(chain)
    return chains


class Stretches:
    """Live stretches of a text looked up by the id of any character in them."""

    def __init__(self, pieces: list[tuple[Item, int, int]]) -> None:
        self._by_client: dict[int, list[tuple[int, int, Item]]] = {}
        for item, lo, hi in pieces:
            self._by_client.setdefault(item.client, []).append((lo, hi, item))
        for runs in self._by_client.values():
            runs.sort(key=lambda r: r[0])
        self._starts = {c: [r[0] for r in runs] for c, runs in self._by_client.items()}

    def holding(self, ref: Id) -> tuple[Item, int, int] | None:
        runs = self._by_client.get(ref[0])
        if not runs:
            return None
        at = bisect.bisect_right(self._starts[ref[0]], ref[1]) - 1
        if at < 0:
            return None
        lo, hi, item = runs[at]
        return (item, lo, hi) if ref[1] < hi else None


def _within(ids: IdSet, item: Item) -> list[tuple[int, int]]:
    """The parts of `item` that are in `ids`."""
    end = item.clock + item.length
    outside = ids.gaps(item.client, item.clock, end)
    out, pos = [], item.clock
    for lo, hi in outside:
        if lo > pos:
            out.append((pos, lo))
        pos = hi
    if pos < end:
        out.append((pos, end))
    return out


def _shown(item: Item, lo: int, hi: int) -> str:
    if item.content == STRING:
        return utf16_range(item.value, lo - item.clock, hi - item.clock)
    return "\ufffc"


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")

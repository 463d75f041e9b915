"""Planning a revert of one agent's work in a text, and who did what since when (`Scope`).

See `crdtdoc.revert`: each live stretch the agent wrote since the version is deleted (unless
someone else wrote inside it), and each stretch it deleted is written again, as a copy, exactly
where it stood among everything written since: the engine reads the text as it would be had
those deletions never happened, and the plan walks that order once, in positions of the text as
`read()` shows it now.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crdtdoc import textdiff
from crdtdoc.blame import Piece, shown, text_items
from crdtdoc.contents import DELETED, STRING
from crdtdoc.errors import HistoryUnavailable
from crdtdoc.idset import IdSet
from crdtdoc.updates import Item
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.history import RoomHistory

Id = tuple[int, int]


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
    # An entry written since may carry on a run of deletions from before (`Replica`'s
    # deletions log extends a run's entry): what was deleted at `since` was not deleted since.
    scope.wrote_deletions = scope.wrote_deletions.difference(since.deleted)
    return scope


@dataclass
class TextPlan:
    """The edits that revert one text, in positions of its current `read()`."""

    edits: list[textdiff.Edit]
    removed: int
    restored: int
    kept: list[str]
    revived: IdSet = field(default_factory=IdSet)  # the deleted ids it writes back


Order = Callable[[IdSet], list[Piece]]
"""The live pieces of a text in order, with the given deleted ids brought back."""


def plan_text(room: RoomHistory, scope: Scope, name: str, order: Order, length: int) -> TextPlan:
    """The edits reverting `scope` in the text root `name` (of `length` positions now).

    `order(revived)` reads the text as it would be had `revived` never been deleted: the
    stretches the scope deleted then sit exactly where they stood, among everything written
    since, so one walk through it places every removal and every restoration."""
    deleted = room.deleted
    items = text_items(room.doc, name)
    kept: list[str] = []
    revived = IdSet()
    # What a revert wrote back already stays as it is: a second revert writes it no second
    # time (and says so: a note claiming it may be anyone's).
    deleted_by_them = scope.wrote_deletions.difference(scope.others_deleted)
    gone = deleted_by_them.difference(room.doc.restored)
    again = _text_ids(items, deleted_by_them.intersection(room.doc.restored).intersection(deleted))
    if again:
        kept.append(f"{name}: {again} character(s) an earlier revert wrote back already")
    unheld = 0
    for item in items:
        # their own writing since the version stays deleted
        end = item.clock + item.length
        if item.client in scope.clients:
            end = min(end, scope.since.clocks.get(item.client, 0))
        for lo, hi in _inside(gone, item.client, item.clock, end) if item.clock < end else ():
            for a, b in _inside(deleted, item.client, lo, hi):
                if item.content == DELETED:
                    unheld += b - a
                elif item.content != STRING:
                    kept.append(f"{name}: an embed they deleted cannot be written back")
                else:
                    revived.add(item.client, a, b)
    if unheld:
        kept.append(
            f"{name}: {unheld} character(s) they deleted cannot be written back: "
            f"{HistoryUnavailable.COLLECTED}"
        )
    pinned = _pinned(items, deleted, scope)
    edits: list[textdiff.Edit] = []
    removed = restored = index = 0
    for item, lo, hi in order(revived):
        for a, b in _runs(item, lo, hi, deleted, scope):
            text = shown((item, a, b))
            if deleted.contains(item.client, a):  # brought back
                edits.append(textdiff.Edit(index, 0, text))
                restored += len(text)
                continue
            if scope.wrote(item.client, a):
                if any(item.client == c and a <= k < b for c, k in pinned):
                    kept.append(f"{name}: {_short(text)} (someone else wrote inside it)")
                else:
                    edits.append(textdiff.Edit(index, len(text), ""))
                    removed += len(text)
            index += len(text)
    if index != length:
        return TextPlan([], 0, 0, [f"{name}: its positions could not be read; nothing changed"])
    return TextPlan(_merged(edits), removed, restored, kept, revived)


def _text_ids(items: list[Item], ids: IdSet) -> int:
    """How many of `ids` are in the text's `items`."""
    return sum(
        hi - lo
        for item in items
        for lo, hi in _inside(ids, item.client, item.clock, item.clock + item.length)
    )


def _pinned(items: list[Item], deleted: IdSet, scope: Scope) -> set[Id]:
    """Ids of the scope's live text that others' live text was written inside of (between
    two of its characters): taking them out would leave those edits stranded."""
    pinned: set[Id] = set()
    for item in items:
        if scope.wrote(item.client, item.clock) or deleted.contains(item.client, item.clock):
            continue
        refs = [r for r in (item.origin, item.right_origin) if r and scope.wrote(*r)]
        if len(refs) == 2 and not any(deleted.contains(*r) for r in refs):
            pinned.update(refs)
    return pinned


def _runs(item: Item, lo: int, hi: int, deleted: IdSet, scope: Scope) -> list[tuple[int, int]]:
    """`[lo, hi)` of `item` cut where it changes between deleted and live, or between the
    scope's writing and older writing."""
    cuts = {lo, hi}
    since = scope.since.clocks.get(item.client, 0) if item.client in scope.clients else 0
    if lo < since < hi:
        cuts.add(since)
    for a, b in deleted.gaps(item.client, lo, hi):
        cuts.update((a, b))
    points = sorted(cuts)
    return list(itertools.pairwise(points))


def _merged(edits: list[textdiff.Edit]) -> list[textdiff.Edit]:
    """Edits at one index (an insertion, then a deletion) made one."""
    out: list[textdiff.Edit] = []
    for edit in edits:
        if out and out[-1].index == edit.index and not out[-1].delete:
            last = out.pop()
            edit = textdiff.Edit(edit.index, edit.delete, last.insert + edit.insert)
        out.append(edit)
    return out


def _inside(ids: IdSet, client: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of `client`'s clocks `[lo, hi)` that are in `ids`."""
    out, pos = [], lo
    for a, b in ids.gaps(client, lo, hi):
        if a > pos:
            out.append((pos, a))
        pos = b
    if pos < hi:
        out.append((pos, hi))
    return out


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")

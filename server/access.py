"""Who may write what: read-only tokens, per-artifact scopes, frozen specs, client-id ownership,
forged agent names, and room size. The hub checks every update here before applying it.

`RootIndex` knows which root (artifact) every item of a room lives under, so an update can be
judged by the artifacts it touches, including items nested in maps and arrays and ids it deletes.
It is built from the room's state the first time a check needs it, then kept up to date.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from crdtdoc.errors import Forbidden
from crdtdoc.idset import IdSet
from crdtdoc.roots import AGENTS_ROOT, INTERNAL_ROOTS
from crdtdoc.updates import GC, SKIP, Item, ParsedUpdate

BOOKKEEPING = INTERNAL_ROOTS
"""Roots every writer may touch (its own agent entry, deletion log, artifact kinds, notes)."""


class RootIndex:
    """client -> sorted runs of (start, end, root) over every item id of a room."""

    def __init__(self) -> None:
        self._starts: dict[int, list[int]] = {}
        self._runs: dict[int, list[tuple[int, int, str | None]]] = {}

    def root_of(self, client: int, clock: int) -> str | None:
        starts = self._starts.get(client)
        if not starts:
            return None
        pos = bisect.bisect_right(starts, clock) - 1
        if pos < 0:
            return None
        start, end, root = self._runs[client][pos]
        return root if start <= clock < end else None

    def roots_of_range(self, client: int, start: int, end: int) -> set[str | None]:
        """Roots of the ids [start, end) of `client` (None for ids not in the room)."""
        starts = self._starts.get(client, [])
        runs = self._runs.get(client, [])
        out: set[str | None] = set()
        pos = max(bisect.bisect_right(starts, start) - 1, 0)
        covered = start
        for run_start, run_end, root in runs[pos:]:
            if run_start >= end:
                break
            if run_end <= start:
                continue
            if run_start > covered:
                out.add(None)
            out.add(root)
            covered = max(covered, run_end)
        if covered < end:
            out.add(None)
        return out

    def resolve(self, items: list[Item]) -> dict[tuple[int, int], str | None]:
        """The root of each item of an update (by its first id), using the room's index and the
        update's own items (a parent may come later in the same update)."""
        local: dict[int, list[Item]] = {}
        for item in items:
            local.setdefault(item.client, []).append(item)
        local_starts = {c: [i.clock for i in its] for c, its in local.items()}
        memo: dict[tuple[int, int], str | None] = {}

        def find_local(client: int, clock: int) -> Item | None:
            starts = local_starts.get(client)
            if not starts:
                return None
            pos = bisect.bisect_right(starts, clock) - 1
            item = local[client][pos] if pos >= 0 else None
            return item if item is not None and clock < item.clock + item.length else None

        def root_of_id(client: int, clock: int, depth: int) -> str | None:
            item = find_local(client, clock)
            if item is not None:
                return root(item, depth + 1)
            return self.root_of(client, clock)

        def root(item: Item, depth: int = 0) -> str | None:
            key = (item.client, item.clock)
            if key in memo:
                return memo[key]
            memo[key] = None  # a cycle resolves to "unknown"
            result: str | None = None
            if depth < 10_000:
                if isinstance(item.parent, str):
                    result = item.parent
                elif item.parent is not None:
                    result = root_of_id(*item.parent, depth)
                elif item.origin is not None:
                    result = root_of_id(*item.origin, depth)
                elif item.right_origin is not None:
                    result = root_of_id(*item.right_origin, depth)
            memo[key] = result
            return result

        return {(i.client, i.clock): root(i) for i in items if i.content not in (GC, SKIP)}

    def add(self, items: list[Item]) -> None:
        """Records the items of an applied update."""
        roots = self.resolve(items)
        for item in items:
            if item.content == SKIP:
                continue
            self._insert(
                item.client,
                item.clock,
                item.clock + item.length,
                roots.get((item.client, item.clock)),
            )

    def _insert(self, client: int, start: int, end: int, root: str | None) -> None:
        starts = self._starts.setdefault(client, [])
        runs = self._runs.setdefault(client, [])
        if runs and runs[-1][1] == start and runs[-1][2] == root:  # the common case: appending
            runs[-1] = (runs[-1][0], end, root)
            return
        pos = bisect.bisect_left(starts, start)
        if pos < len(starts) and starts[pos] == start:
            return  # already known
        starts.insert(pos, start)
        runs.insert(pos, (start, end, root))


def touched_roots(
    index: RootIndex, parsed: ParsedUpdate, state: dict[int, int], deleted: IdSet
) -> set[str | None]:
    """Roots an update changes: of the items it adds and of the ids it newly deletes."""
    roots: set[str | None] = set()
    items = [i for i in parsed.items or [] if i.clock + i.length > state.get(i.client, 0)]
    resolved = index.resolve(items)
    roots.update(resolved.values())
    for client, start, end in parsed.delete_set.difference(deleted):
        roots.update(index.roots_of_range(client, start, end))
    return roots


def check_agent_entries(
    items: Iterable[Item], roots: dict[tuple[int, int], str | None], agent: str
) -> None:
    """An item in the agents registry must be its own client's entry, naming `agent`."""
    for item in items:
        if roots.get((item.client, item.clock)) != AGENTS_ROOT or item.parent_sub is None:
            continue
        value = item.value[-1] if isinstance(item.value, list) and item.value else None
        if item.parent_sub != str(item.client) or value != agent:
            raise Forbidden(
                f"attribution refused: client {item.client} may only register itself, as {agent!r}"
            )

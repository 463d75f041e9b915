"""`RootIndex`: which root (artifact) every item of a document lives under.

An update names the parent of a nested item by the parent's id, or leaves it to be found through
its neighbours (origins), so finding the artifact an id belongs to needs the whole document's
structure. The index keeps that as sorted runs of ids per client, built once from a document and
then extended with each update, so "which artifacts did these ids touch" costs a few bisections.
The hub uses it to judge updates by the artifacts they touch; a replica uses it to tell cheaply
whether others changed the artifacts a guarded write depends on.
"""

from __future__ import annotations

import bisect

from crdtdoc.updates import GC, SKIP, Item


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

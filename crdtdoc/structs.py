"""A whole document read once, for questions about its structs: every item looked up by id with
its root, key and path (`StructIndex`), the agent behind each client id, the deletions log (who
deleted what, found by id: `Claims`), and what reverts wrote back (`DocumentStructs`). The change
feed, history, blame and revert read documents through it (`read_structs`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

from crdtdoc.contents import ANY, DELETED, FORMAT, GC, SKIP, STRING
from crdtdoc.idset import IdSet
from crdtdoc.roots import AGENTS_ROOT, DELETIONS_ROOT, NOTES_ROOT
from crdtdoc.safe_read import agent_name, client_id_of
from crdtdoc.updates import Item, decode_delete_set, parse_update


class StructIndex:
    """Items of a full-state update, looked up by id, with each item's root resolved."""

    def __init__(self, items: list[Item]) -> None:
        self.by_client: dict[int, list[Item]] = {}
        for item in items:
            self.by_client.setdefault(item.client, []).append(item)
        self.starts = {c: [i.clock for i in its] for c, its in self.by_client.items()}
        self._roots: dict[tuple[int, int], str | None] = {}
        self._subs: dict[tuple[int, int], str | None] = {}
        self._paths: dict[tuple[int, int], tuple[str, ...]] = {}
        self._containers: dict[tuple[int, int], str | tuple[int, int] | None] = {}

    def find(self, client: int, clock: int) -> Item | None:
        starts = self.starts.get(client)
        if not starts:
            return None
        pos = bisect.bisect_right(starts, clock) - 1
        if pos < 0:
            return None
        item = self.by_client[client][pos]
        return item if clock < item.clock + item.length else None

    def overlapping(self, client: int, start: int, end: int) -> list[Item]:
        starts = self.starts.get(client)
        if not starts:
            return []
        pos = max(bisect.bisect_right(starts, start) - 1, 0)
        items = self.by_client[client]
        out = []
        while pos < len(items) and items[pos].clock < end:  # (no copy of the list's tail)
            if items[pos].clock + items[pos].length > start:
                out.append(items[pos])
            pos += 1
        return out

    def root(self, item: Item) -> str | None:
        """The root type name an item lives under, following origins and parents."""
        chain = []
        current: Item | None = item
        result: str | None = None
        while current is not None:
            key = (current.client, current.clock)
            if key in self._roots:
                result = self._roots[key]
                break
            chain.append(key)
            if len(chain) > 100_000:
                break
            if isinstance(current.parent, str):
                result = current.parent
                break
            ref = current.parent or current.origin or current.right_origin
            current = self.find(*ref) if ref is not None else None
        for key in chain:
            self._roots[key] = result
        return result

    def container(self, item: Item) -> str | tuple[int, int] | None:
        """The root name or nested-type id an item lives in (copied from its origins). Every
        item met on the way is remembered: a text typed letter by letter is a chain of origins
        as long as the text, walked once, not once per letter."""
        chain: list[tuple[int, int]] = []
        current: Item | None = item
        result: str | tuple[int, int] | None = None
        while current is not None and len(chain) <= 100_000:
            key = (current.client, current.clock)
            if key in self._containers:
                result = self._containers[key]
                break
            chain.append(key)
            if current.parent is not None:
                result = current.parent
                break
            ref = current.origin or current.right_origin
            current = self.find(*ref) if ref is not None else None
        for key in chain:
            self._containers[key] = result
        return result

    def path(self, item: Item, _depth: int = 0) -> tuple[str, ...]:
        """Keys from the root down to the nested type holding `item` (() at the root)."""
        parent = self.container(item)
        if parent is None or isinstance(parent, str) or _depth > 64:
            return ()
        cached = self._paths.get(parent)
        if cached is not None:
            return cached
        holder = self.find(*parent)
        if holder is None:
            return ()
        key = self.sub(holder)
        path = (*self.path(holder, _depth + 1), key if key is not None else "[]")
        self._paths[parent] = path
        return path

    def sub(self, item: Item) -> str | None:
        """The map key of an item (copied from its origins when not written); remembered for
        every item on the way, so a run of n list or text items costs O(n), not O(n^2)."""
        subs = self._subs
        chain = []
        current: Item | None = item
        result: str | None = None
        while current is not None:
            key = (current.client, current.clock)
            if key in subs:
                result = subs[key]
                break
            chain.append(key)
            if current.parent is not None:
                result = current.parent_sub
                break
            if len(chain) > 100_000:
                break
            ref = current.origin or current.right_origin
            current = self.find(*ref) if ref is not None else None
        for key in chain:
            subs[key] = result
        return result


def utf16_range(s: str, start: int, end: int) -> str:
    """The characters of `s` from UTF-16 unit `start` to unit `end` (Yjs counts clocks so)."""
    if s.isascii():
        return s[start:end]
    units = 0
    first = None
    for i, ch in enumerate(s):
        if first is None and units >= start:
            first = i
        if units >= end:
            return s[first:i]
        units += 2 if ord(ch) > 0xFFFF else 1
    return s[first:] if first is not None else ""


@dataclass
class DocumentStructs:
    """A full-state update read once for the change feed: its items (looked up by id, with each
    item's root), the agent behind each client id, the deletions log, and which roots are texts.
    History asks many questions of one document; each reads this instead of parsing again."""

    items: list[Item]
    index: StructIndex
    agents: dict[int, str]
    deleters: list[tuple[int, int, IdSet]]  # (client, clock of the log entry, ids it deleted)
    texts: frozenset[str]
    restored: IdSet = field(default_factory=IdSet)  # deleted ids a revert wrote back (notes)
    _claims: Claims | None = None
    _keyed: dict[tuple[str, tuple[str, ...], str], list[Item]] | None = None

    def key_live(
        self,
        key: tuple[str, tuple[str, ...], str],
        deleted: IdSet,
        written: Mapping[int, int] | None = None,
    ) -> bool:
        """Whether map key `key` (root, path, key) holds a value: an entry not `deleted` (and,
        with `written`, written by then)."""
        if self._keyed is None:
            self._keyed = {}
            for item in self.items:
                sub = self.index.sub(item) if item.content not in (GC, SKIP, FORMAT) else None
                root = self.index.root(item) if sub is not None else None
                if root is not None and sub is not None:
                    self._keyed.setdefault((root, self.index.path(item), sub), []).append(item)
        return any(
            item.content != DELETED
            and not deleted.contains(item.client, item.clock)
            and (written is None or item.clock < written.get(item.client, 0))
            for item in self._keyed.get(key, ())
        )

    def claims(self) -> Claims:
        """The deletions log's entries by the ids they claim (built on first use)."""
        if self._claims is None:
            self._claims = Claims(self.deleters)
        return self._claims


def read_structs(full_update: bytes, text_roots: frozenset[str] = frozenset()) -> DocumentStructs:
    """Reads `full_update` (a whole document) for `changes_between`. `text_roots` names roots
    known to be texts (deleted text leaves no string behind to tell)."""
    parsed = parse_update(full_update, details=True)
    items = parsed.items or []
    index = StructIndex(items)
    texts = set(text_roots)
    agents: dict[int, str] = {}
    deleters: list[tuple[int, int, IdSet]] = []
    restored = IdSet()
    for item in items:
        root = index.root(item) if item.content in (ANY, STRING) else None
        if item.content == STRING and root is not None and index.sub(item) is None:
            texts.add(root)  # (a string written as a map value is no text)
        if root == AGENTS_ROOT and item.content == ANY:
            sub = index.sub(item)
            client = client_id_of(sub) if sub is not None else None
            name = agent_name(item.value[-1]) if item.value else None
            if client is not None and name is not None:
                agents[client] = name
        elif root == DELETIONS_ROOT and item.content == ANY:
            for offset, entry in enumerate(item.value or []):
                ds = decode_delete_set(entry)
                if ds is not None:
                    deleters.append((item.client, item.clock + offset, ds))
        elif root == NOTES_ROOT and item.content == ANY:
            for note in item.value or []:
                _restores(note, restored)
    return DocumentStructs(items, index, agents, deleters, frozenset(texts), restored)


def _restores(note: object, into: IdSet) -> None:
    """Adds the deleted ids a revert's note says it wrote back (`"restores": [[client, start,
    end], ...]`); anything else in a note is no claim."""
    ranges = note.get("restores") if isinstance(note, dict) else None
    for entry in ranges if isinstance(ranges, list) else ():
        numbers = [_count(n) for n in entry] if isinstance(entry, list) and len(entry) == 3 else []
        if len(numbers) == 3 and None not in numbers:
            client, start, end = (int(n) for n in numbers if n is not None)
            if start < end <= start + 2**32:
                into.add(client, start, end)


def _count(value: object) -> int | None:
    """A non-negative whole number as a JSON value holds it (Yjs numbers may read as floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (value.is_integer() and value < 2**53):
        return None
    return int(value) if value >= 0 else None


class Claims:
    """The deletions log's entries, found by the ids they claim: what `_attribute` asks of
    every deleted range (a scan of every entry per range was quadratic on long histories)."""

    def __init__(self, deleters: list[tuple[int, int, IdSet]]) -> None:
        self._entries = [(client, ds) for client, _, ds in deleters]
        ranges: dict[int, list[tuple[int, int, int]]] = {}  # client -> (start, end, entry)
        for number, (_, ds) in enumerate(self._entries):
            for client, start, end in ds:
                ranges.setdefault(client, []).append((start, end, number))
        self._ranges = {c: sorted(rs) for c, rs in ranges.items()}
        self._longest = {c: max(e - s for s, e, _ in rs) for c, rs in self._ranges.items()}

    def overlapping(self, part: IdSet) -> list[tuple[int, IdSet]]:
        """The entries claiming any id of `part`, in log order."""
        found: set[int] = set()
        for client, start, end in part:
            ranges = self._ranges.get(client)
            if not ranges:
                continue
            at = bisect.bisect_left(ranges, (start - self._longest[client], -1, -1))
            while at < len(ranges) and ranges[at][0] < end:
                if ranges[at][1] > start:
                    found.add(ranges[at][2])
                at += 1
        return [self._entries[n] for n in sorted(found)]

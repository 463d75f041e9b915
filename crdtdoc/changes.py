"""The change feed: what changed between a version and now, in which artifact, by which agent.

Computed from the document itself, so every replica can answer it, including one that joined late
or restarted: inserted structs carry their author's client id, the `__crdtdoc_agents` map names the
agent behind each client id, and the `__crdtdoc_deletions` log says who deleted what (a Yjs delete
set carries no author).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Any

from crdtdoc.encoding import Decoder
from crdtdoc.errors import InvalidUpdate
from crdtdoc.idset import IdSet
from crdtdoc.updates import (
    ANY,
    DELETED,
    GC,
    JSON,
    MAX_CLIENT_ID,
    MAX_CLOCK,
    SKIP,
    STRING,
    TYPE,
    Item,
    parse_update,
)
from crdtdoc.values import from_yjs
from crdtdoc.versions import Version

_AGENTS_ROOT = "__crdtdoc_agents"
_DELETIONS_ROOT = "__crdtdoc_deletions"


@dataclass(frozen=True)
class Change:
    """One change: `kind` is "insert" / "delete" (text and lists) or "set" / "remove" (map keys).

    `agent` is None when the author is unknown (for example a deletion made implicitly when two
    concurrent writes to one map key merged).
    """

    agent: str | None
    client_id: int | None
    artifact: str
    kind: str
    text: str = ""  # inserted text
    length: int = 0  # characters / elements inserted or deleted
    key: str | None = None  # the map key, for "set" and "remove"
    value: Any = None  # the new value, for "set"
    text_artifact: bool = False  # the artifact is a text (lengths count characters)

    def describe(self) -> str:
        """One line a person (or an agent's prompt) can read."""
        who = self.agent or "someone"
        if self.kind == "set":
            return f"{who} set {self.artifact}.{self.key} = {self.value!r}"
        if self.kind == "remove":
            return f"{who} removed {self.artifact}.{self.key}"
        if self.kind == "insert":
            what = repr(self.text) if self.text else f"{self.length} element(s)"  # lists
            return f"{who} inserted {what} into {self.artifact}"
        unit = "character" if self.text_artifact else "element"
        plural = "" if self.length == 1 else "s"
        return f"{who} deleted {self.length} {unit}{plural} from {self.artifact}"


class _Index:
    """Items of a full-state update, looked up by id, with each item's root resolved."""

    def __init__(self, items: list[Item]) -> None:
        self.by_client: dict[int, list[Item]] = {}
        for item in items:
            self.by_client.setdefault(item.client, []).append(item)
        self.starts = {c: [i.clock for i in its] for c, its in self.by_client.items()}
        self._roots: dict[tuple[int, int], str | None] = {}

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
        out = []
        for item in self.by_client[client][pos:]:
            if item.clock >= end:
                break
            if item.clock + item.length > start:
                out.append(item)
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

    def sub(self, item: Item) -> str | None:
        """The map key of an item (copied from its origin when not written)."""
        current: Item | None = item
        for _ in range(100_000):
            if current is None or current.parent is not None:
                return current.parent_sub if current is not None else None
            ref = current.origin or current.right_origin
            current = self.find(*ref) if ref is not None else None
        return None


def _utf16_slice(s: str, start_units: int) -> str:
    if s.isascii():
        return s[start_units:]
    units = 0
    for i, ch in enumerate(s):
        if units >= start_units:
            return s[i:]
        units += 2 if ord(ch) > 0xFFFF else 1
    return ""


def changes_between(
    full_update: bytes,
    since: Version,
    deleted_now: IdSet,
    text_roots: frozenset[str] = frozenset(),
) -> list[Change]:
    """Changes in the document `full_update` encodes that `since` has not seen.

    `text_roots` names roots known to be texts (deleted text leaves no string behind to tell).
    """
    parsed = parse_update(full_update, details=True)
    items = parsed.items or []
    index = _Index(items)
    texts = set(text_roots)
    agents: dict[int, str] = {}
    deleters: list[tuple[int, IdSet]] = []
    for item in items:
        root = index.root(item) if item.content in (ANY, STRING) else None
        if item.content == STRING and root is not None:
            texts.add(root)
        if root == _AGENTS_ROOT and item.content == ANY:
            sub = index.sub(item)
            if sub and sub.isdigit() and item.value and isinstance(item.value[-1], str):
                agents[int(sub)] = item.value[-1]
        elif root == _DELETIONS_ROOT and item.content == ANY:
            for entry in item.value or []:
                if isinstance(entry, bytes):
                    try:
                        ds = IdSet.decode_from(
                            Decoder(entry, InvalidUpdate),
                            max_clock=MAX_CLOCK,
                            max_client=MAX_CLIENT_ID,
                        )
                    except InvalidUpdate:
                        continue
                    deleters.append((item.client, ds))

    clocks = since.clocks
    changes: list[Change] = []
    live_keys: set[tuple[str, str]] = set()
    prev_end: tuple[int, int] | None = None
    for item in items:
        if item.content in (GC, SKIP):
            continue
        root = index.root(item)
        if root is None or root.startswith("__crdtdoc_"):
            continue
        sub = index.sub(item) if item.content != STRING else None
        if sub is not None and item.content != DELETED:
            live_keys.add((root, sub))
        seen = clocks.get(item.client, 0)
        if item.clock + item.length <= seen or item.content == DELETED:
            continue
        offset = max(seen - item.clock, 0)
        agent = agents.get(item.client)
        if sub is not None:
            value: Any = item.value[-1] if item.content in (ANY, JSON) and item.value else None
            if item.content == TYPE:
                value = f"<{item.value}>"
            changes.append(Change(agent, item.client, root, "set", key=sub, value=from_yjs(value)))
        else:
            # Consecutive typing (each item's origin is the previous one's last id) reads as one.
            follows = prev_end is not None and item.origin == prev_end and offset == 0
            text = _utf16_slice(item.value, offset) if item.content == STRING else ""
            length = len(text) if text else item.length - offset
            change = Change(agent, item.client, root, "insert", text, length)
            _add(changes, change, merge=follows)
            prev_end = (item.client, item.clock + item.length - 1)
            continue
        prev_end = None

    # Deletions since `since` of things `since` had (things inserted and deleted since cancel out).
    new_deletions = deleted_now.difference(since.deleted).clip_to(clocks)
    for client, start, end in new_deletions:
        for item in index.overlapping(client, start, end):
            root = index.root(item)
            if root is None or root.startswith("__crdtdoc_"):
                continue
            lo, hi = max(start, item.clock), min(end, item.clock + item.length)
            sub = index.sub(item) if item.content != STRING else None
            part = IdSet()
            part.add(client, lo, hi)
            for author, length in _attribute(part, deleters):
                agent = agents.get(author) if author is not None else None
                if sub is not None:
                    if (root, sub) not in live_keys:
                        changes.append(Change(agent, author, root, "remove", key=sub))
                else:
                    change = Change(
                        agent, author, root, "delete", length=length, text_artifact=root in texts
                    )
                    _add(changes, change, merge=True)
    return changes


def _attribute(part: IdSet, deleters: list[tuple[int, IdSet]]) -> list[tuple[int | None, int]]:
    """Splits deleted ids among the clients whose deletions log claims them."""
    out: list[tuple[int | None, int]] = []
    rest = part
    for author, ds in deleters:
        claimed = rest.intersection(ds)
        if claimed:
            out.append((author, len(claimed)))
            rest = rest.difference(claimed)
            if not rest:
                break
    if rest:
        out.append((None, len(rest)))
    return out


def _add(changes: list[Change], change: Change, *, merge: bool) -> None:
    """Appends, merging into the previous change when allowed and of the same kind and client."""
    if merge and changes:
        last = changes[-1]
        if (
            last.kind == change.kind
            and last.client_id == change.client_id
            and last.artifact == change.artifact
            and last.kind in ("insert", "delete")
        ):
            changes[-1] = replace(
                last, text=last.text + change.text, length=last.length + change.length
            )
            return
    changes.append(change)

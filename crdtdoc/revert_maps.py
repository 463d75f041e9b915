"""Planning a revert of one agent's work in maps: task lists, specs, maps, and the maps inside
them (see `crdtdoc.revert`). A key the agent set goes back to the value it overwrote (or away);
a key it removed comes back; a map it made that others wrote inside is kept and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crdtdoc.contents import ANY, DELETED, FORMAT, GC, JSON, SKIP, TYPE
from crdtdoc.revert_text import Scope
from crdtdoc.updates import Item
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.history import RoomHistory


@dataclass
class MapChange:
    """One key to change: in the container at `path` of root `root`, set `key` to `value`
    (copied from `source`, a past version, when it is a shared type) or remove it."""

    root: str
    path: tuple[str, ...]
    key: str
    remove: bool = False
    value: Any = None
    source: Version | None = None  # read a shared type's content from this version


def plan_maps(
    room: RoomHistory, scope: Scope, roots: set[str], specs: set[str]
) -> tuple[list[MapChange], list[str]]:
    """The key changes reverting `scope` in the maps of `roots`, and what is kept. In the
    specs among them, a member's entries are judged together (`_plan_members`)."""
    index = room.doc.index
    groups: dict[tuple[object, str], list[Item]] = {}
    members: dict[tuple[str, str], list[Item]] = {}  # (spec, member) -> its entries
    for item in room.doc.items:
        if item.content in (GC, SKIP, FORMAT):
            continue
        root = index.root(item)
        key = index.sub(item)
        if root not in roots or key is None:
            continue
        container = index.container(item)
        if root in specs and container == root and key.startswith("m:"):
            entry = item.value[-1] if item.content == ANY and item.value else None
            member = entry.get("member") if isinstance(entry, dict) else None
            if isinstance(member, str):
                members.setdefault((root, member), []).append(item)
                continue
        groups.setdefault((container, key), []).append(item)
    changes, kept = _plan_keys(room, scope, groups)
    for (root, _member), entries in members.items():
        changes += _plan_member(room, scope, root, entries)
    # A map kept because others wrote inside it is reported once, not once per map within.
    kept = [k for k in kept if not any(k.startswith(o.split(" (")[0] + "/") for o in kept)]
    # A map taken out or written back whole takes what is inside it along.
    whole = {(c.root, *c.path, c.key) for c in changes if c.remove or c.source is not None}
    return [c for c in changes if not any((c.root, *c.path)[: len(w)] == w for w in whole)], kept


def _plan_member(
    room: RoomHistory, scope: Scope, root: str, entries: list[Item]
) -> list[MapChange]:
    """A spec member (SCHEMA.md): each write deletes the entries its writer saw and adds its
    own. The scope's live entries go; the entries it deleted come back, unless someone else
    has written the member since (their value stands)."""
    index, deleted = room.doc.index, room.deleted
    live = [e for e in entries if not deleted.contains(e.client, e.clock)]
    ours = [e for e in live if scope.wrote(e.client, e.clock)]
    changes = [MapChange(root, (), index.sub(e) or "", remove=True) for e in ours]
    if len(ours) == len(live):
        for entry in entries:
            if (
                deleted.contains(entry.client, entry.clock)
                and not scope.wrote(entry.client, entry.clock)
                and scope.wrote_deletions.contains(entry.client, entry.clock)
                and not scope.others_deleted.contains(entry.client, entry.clock)
            ):
                changes.append(_restore(room, root, (), index.sub(entry) or "", entry))
    return changes


def _plan_keys(
    room: RoomHistory, scope: Scope, groups: dict[tuple[object, str], list[Item]]
) -> tuple[list[MapChange], list[str]]:
    """Each key on its own: set back, removed, or brought back (see the module docstring)."""
    index, deleted = room.doc.index, room.deleted
    changes: list[MapChange] = []
    kept: list[str] = []
    for (container, key), group in groups.items():
        if isinstance(container, tuple) and _gone(room, container):
            continue  # the map holding it is deleted: restored whole, or gone for good
        first = group[0]
        root = index.root(first) or ""
        path = index.path(first)
        where = "/".join((root, *path, key))
        live = [
            i for i in group if i.content != DELETED and not deleted.contains(i.client, i.clock)
        ]
        ends = {(i.client, i.clock + i.length - 1): i for i in group}
        if live:
            current = live[-1]
            if not scope.wrote(current.client, current.clock):
                continue
            if current.content == TYPE and _built_on(room, scope, current):
                kept.append(f"{where} (others wrote inside it)")
                continue
            before = ends.get(current.origin) if current.origin else None
            while before is not None and scope.wrote(before.client, before.clock):
                before = ends.get(before.origin) if before.origin else None
            if before is None or scope.others_deleted.contains(before.client, before.clock):
                changes.append(MapChange(root, path, key, remove=True))
            elif before.content == DELETED:
                kept.append(f"{where} (the value it overwrote is no longer held: collected)")
            else:
                changes.append(_restore(room, root, path, key, before))
            continue
        referenced = {i.origin for i in group if i.origin}
        tails = [i for i in group if (i.client, i.clock + i.length - 1) not in referenced]
        for tail in tails[-1:]:
            if scope.wrote(tail.client, tail.clock):
                continue
            if scope.wrote_deletions.contains(
                tail.client, tail.clock
            ) and not scope.others_deleted.contains(tail.client, tail.clock):
                if tail.content == DELETED:
                    kept.append(f"{where} (the value they deleted is no longer held: collected)")
                else:
                    changes.append(_restore(room, root, path, key, tail))
    return changes, kept


def _restore(
    room: RoomHistory, root: str, path: tuple[str, ...], key: str, item: Item
) -> MapChange:
    """The change that sets `key` back to what `item` held."""
    if item.content == TYPE:
        return MapChange(root, path, key, value=None, source=_before_deleted(room, item))
    if item.content not in (ANY, JSON):
        return MapChange(root, path, key, value=item.value)  # a string, an embed's value
    return MapChange(root, path, key, value=item.value[-1] if item.value else None)


def _before_deleted(room: RoomHistory, item: Item) -> Version:
    """The version just before the step that deleted `item` (where it was still live)."""
    for number, step in enumerate(room.steps):
        if step.deletes.contains(item.client, item.clock):
            return room.versions({number}).get(number - 1, Version())
    return Version()


def _gone(room: RoomHistory, container: tuple[int, int]) -> bool:
    holder = room.doc.index.find(*container)
    return holder is None or holder.content == DELETED or room.deleted.contains(*container)


def _built_on(room: RoomHistory, scope: Scope, made: Item) -> bool:
    """Whether anyone but `scope` wrote, live, inside the shared type `made`."""
    index = room.doc.index
    target = (made.client, made.clock)
    for item in room.doc.items:
        if scope.wrote(item.client, item.clock) or room.deleted.contains(item.client, item.clock):
            continue
        container = index.container(item)
        depth = 0
        while isinstance(container, tuple) and depth < 64:
            if container == target:
                return True
            holder = index.find(*container)
            container = index.container(holder) if holder is not None else None
            depth += 1
    return False

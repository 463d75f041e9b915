"""Reverting an agent's work: ordinary edits that take out what it wrote and put back what it
deleted since a version, keeping what everyone else did.

What an agent wrote is the structs its client ids wrote after the version's clocks; what it
deleted is what its entries in the deletions log claim, from the same point. Nothing is rolled
back: the revert is a new change by whoever reverts (attributed, noted, merged like any other,
itself revertible), computed from a replica that keeps history:

- texts: each live stretch the agent wrote is deleted, and each stretch it deleted is written
  again, as a copy, exactly where it stood among everything written since;
- maps (task lists, specs, maps, and the maps inside them): a key the agent set goes back to the
  value it overwrote (or away, if it had none), and a key the agent removed comes back with the
  value it had (a removed map or list as it was just before the removal).

Where someone else built on what would be taken out (wrote inside the agent's text, or inside a
map the agent made), that part is kept and reported, not guessed at. A key someone else set
after the agent, or text someone else deleted too, is theirs and stays as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pycrdt import Array, Map, Text

from crdtdoc.blame import Piece, ordered_pieces, text_items
from crdtdoc.errors import CrdtdocError, NotFound
from crdtdoc.idset import IdSet
from crdtdoc.revert_maps import MapChange, plan_maps
from crdtdoc.revert_text import Order, TextPlan, plan_text, scope_of
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.artifacts.document import Document
    from crdtdoc.artifacts.spec import InterfaceSpec
    from crdtdoc.history import RoomHistory


@dataclass(frozen=True)
class RevertResult:
    """What a revert did: stretches of text and map entries taken out and put back, what it
    kept because others built on it (one line each), and the version it led to."""

    removed: int
    restored: int
    kept: tuple[str, ...]
    version: str  # the version after the revert
    before: str  # the version before it: `revert(<who reverted>, since=before)` undoes it

    def describe(self) -> str:
        lines = [f"removed {self.removed}, restored {self.restored}"]
        lines += [f"kept: {k}" for k in self.kept]
        return "\n".join(lines)


class RevertHost(Protocol):
    """What a revert reads and writes of a replica (a `crdtdoc.Replica` is one)."""

    def agents(self) -> dict[int, str]: ...

    def artifacts(self) -> dict[str, str]: ...

    def room_history(self) -> RoomHistory: ...

    def text_offsets(self, name: str, ids: list[tuple[int, int]]) -> list[int]: ...

    def document(self, name: str) -> Document: ...

    def artifact_root(self, name: str, kind: type[Any]) -> Any: ...

    def record_write(self, name: str) -> None: ...

    def declare_artifact(self, name: str, artifact: str, kind: type[Any]) -> None: ...

    def spec(self, name: str) -> InterfaceSpec: ...

    def at(self, version: Version) -> RevertHost: ...

    def version(self) -> Version: ...

    def write_note(self, note: str, on: Iterable[str], **fields: object) -> None: ...

    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
    ) -> AbstractContextManager[None]: ...


MAP_KINDS = ("tasks", "spec", "map")


@dataclass
class RevertPlan:
    """What reverting an agent's work would do, worked out before anything is written (so it
    can be shown first, or written inside a guarded commit): `apply` writes it."""

    agent: str
    removed: int
    restored: int
    kept: list[str]
    touched: list[str]  # the artifacts it changes
    texts: dict[str, TextPlan]
    changes: list[MapChange]
    values: list[Any]
    kinds: dict[str, str]

    def describe(self) -> list[str]:
        """What the plan does, a line per artifact and map key, then what it keeps."""
        lines = [
            f"{name}: take out {text.removed} character(s), put back {text.restored}"
            for name, text in self.texts.items()
            if text.edits
        ]
        for change in self.changes:
            where = "/".join((change.root, *change.path, change.key))
            lines.append(f"{where}: {'remove' if change.remove else 'set back'}")
        return lines + [f"kept: {k}" for k in self.kept] or ["nothing to revert"]

    def apply(self, replica: RevertHost, note: str | None = None) -> None:
        """Writes the plan into `replica`, inside the caller's transaction (a guarded commit,
        say), with a note saying why (`note`; by default "revert <agent>'s work") that records
        the deleted text it writes back, so that no revert writes it back twice. Between
        planning and applying, `replica` must not change."""
        if not self.touched:
            return
        for name, text in self.texts.items():
            if text.edits:
                replica.document(name).apply_edits(text.edits)
        for change, value in zip(self.changes, self.values, strict=True):
            _write(replica, change, self.kinds[change.root], value, self.kept)
        revived = [[c, lo, hi] for t in self.texts.values() for c, lo, hi in t.revived]
        fields = {"restores": revived} if revived else {}
        replica.write_note(note or f"revert {self.agent}'s work", self.touched, **fields)


def plan_revert(replica: RevertHost, agent: str, since: Version, on: set[str]) -> RevertPlan:
    """Plans reverting what `agent` did since `since` in the artifacts `on` (all when empty)."""
    names = replica.agents()
    clients = frozenset(c for c, n in names.items() if n == agent)
    if not clients:
        known = ", ".join(sorted(set(names.values()))) or "none"
        raise NotFound(f"no agent named {agent!r} has written in this room (its agents: {known})")
    room = replica.room_history()
    scope = scope_of(room, clients, since)
    kinds = replica.artifacts()
    wanted = on or set(kinds)
    texts: dict[str, TextPlan] = {}
    kept_early: list[str] = []
    for name in sorted(n for n in wanted if kinds.get(n) == "document"):
        try:
            length = len(replica.document(name).read())
            texts[name] = plan_text(room, scope, name, _order_of(replica, name), length)
        except CrdtdocError as exc:  # (a root others use as another type, say)
            kept_early.append(f"{name}: left as it is: {exc}")
    maps = {n for n in wanted if kinds.get(n) in MAP_KINDS}
    specs = {n for n in maps if kinds[n] == "spec"}
    frozen = {n for n in specs if replica.spec(n).frozen}
    changes, kept = plan_maps(room, scope, maps - frozen, specs)
    if frozen:  # said only where there was something to revert
        held, _ = plan_maps(room, scope, frozen, specs)
        kept += [
            f"{n}: the spec is frozen, so it is left as it is"
            for n in sorted({c.root for c in held})
        ]
    kept = kept_early + kept
    values = _values_of(replica, changes, kept)
    for text in texts.values():
        kept.extend(text.kept)
    touched = {n for n, p in texts.items() if p.edits} | {c.root for c in changes}
    removed = sum(p.removed for p in texts.values()) + sum(c.remove for c in changes)
    restored = sum(p.restored for p in texts.values()) + sum(not c.remove for c in changes)
    return RevertPlan(
        agent, removed, restored, kept, sorted(touched), texts, changes, values, kinds
    )


def revert_work(
    replica: RevertHost, agent: str, since: Version, on: set[str], note: str | None
) -> RevertResult:
    """Reverts what `agent` did since `since` in the artifacts `on` (all when empty), in one
    transaction of `replica`'s own agent, noted with `note`."""
    before = replica.version().token()
    plan = plan_revert(replica, agent, since, on)
    if plan.touched:
        with replica.transaction(on=plan.touched):
            plan.apply(replica, note)
    kept = tuple(plan.kept)
    return RevertResult(plan.removed, plan.restored, kept, replica.version().token(), before)


def _order_of(replica: RevertHost, name: str) -> Order:
    """Reads the text `name` in order with given deleted ids brought back (`plan_text`)."""
    now = replica.version()

    def order(revived: IdSet) -> list[Piece]:
        source = replica
        if revived:  # the room with those deletions undone: a version below the current one
            source = replica.at(Version(now.clocks, now.deleted.difference(revived)))
        room = source.room_history()
        offsets = functools.partial(source.text_offsets, name)
        return ordered_pieces(text_items(room.doc, name), room.deleted, offsets)

    return order


def _values_of(replica: RevertHost, changes: list[MapChange], kept: list[str]) -> list[Any]:
    """The value to write for each change: shared types copied from the past version that
    still held them (read before the revert's transaction starts)."""
    pasts: dict[str, RevertHost] = {}
    values: list[Any] = []
    for change in changes:
        if change.source is None:
            values.append(change.value)
            continue
        token = change.source.token()
        if token not in pasts:
            pasts[token] = replica.at(change.source)
        holder = _container(pasts[token].artifact_root(change.root, Map), change.path)
        found = holder.get(change.key) if holder is not None else None
        values.append(_copy(found))
    return values


def _container(root: Map[Any], path: tuple[str, ...]) -> Map[Any] | None:
    """The map at `path` under `root`, or None if it is not there (or not a map)."""
    current: Any = root
    for key in path:
        current = current.get(key) if isinstance(current, Map) else None
    return current if isinstance(current, Map) else None


def _copy(value: Any) -> Any:
    """A shared type's content as new shared types to write (values as they are)."""
    if isinstance(value, Map):
        return Map({k: _copy(v) for k, v in value.items()})
    if isinstance(value, Array):
        return Array([_copy(v) for v in value])
    if isinstance(value, Text):
        return Text(str(value))
    return value


def _write(replica: RevertHost, change: MapChange, kind: str, value: Any, kept: list[str]) -> None:
    replica.declare_artifact(change.root, kind, Map)
    replica.record_write(change.root)
    holder = _container(replica.artifact_root(change.root, Map), change.path)
    where = "/".join((change.root, *change.path, change.key))
    if holder is None:
        kept.append(f"{where} (the map holding it is gone)")
    elif change.remove:
        if change.key in holder:
            del holder[change.key]
    elif value is None and change.source is not None:
        kept.append(f"{where} (its past content could not be read)")
    else:
        holder[change.key] = value

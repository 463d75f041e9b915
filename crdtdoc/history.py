"""The history of a room, read off the document itself: its steps in causal order, each with
the version it leads to, who made it and what it changed.

Every struct carries its author's client id and names the structs it was written against (its
origins and parent); the deletions log says which client deleted what, and when in its own
sequence of writes. From these alone, without the hub's log, every replica that keeps history
(`Replica(history=True)`) orders the room's writes the same way:

- a *step* is a run of one client's consecutive writes to one root that refers to nothing of
  another client's after its first write (typing on from where it stands), with the
  deletions-log entry written right after it (what the same commit deleted: replacing text or
  a map value deletes and writes at once), or an entry of the deletions log on its own (a
  commit that only deleted);
- a step comes after the step before it of the same client, after the steps holding whatever its
  first write refers to, after the steps that wrote what it deletes, and, for an approval or a
  verification (`crdtdoc.gates`), after the freeze proposal or the completions it answers;
- steps are ranked by the longest chain of such dependencies before them and listed by rank,
  client and clock, so every replica lists the same steps in the same order.

The version after each step is everything up to it: a state vector and delete set closed under
causality, which the engine can show (`Replica.at`). The order is causal, not the wall clock's:
two writes neither of which saw the other may be listed either way round. And the document
records only what each write refers to, not everything its writer had seen: a write that saw
another but touched none of it may be listed before it, and the version after it then shows a
combination no agent saw at once. The hub records what each writer had been sent
(`crdtdoc.provenance`); `built_on` uses that record, the history order does not (yet): it is
the same on every replica, with or without the record. Deletions no entry of the deletions log
claims (made by stock Yjs clients, or a stock client's overwrite of a map key)
come in steps of their own, without an author, after what they delete.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import dataclass, replace

from crdtdoc.changes import Change, changes_between
from crdtdoc.contents import ANY, DELETED, GC, JSON, SKIP
from crdtdoc.gates import APPROVAL_PREFIX, PROPOSAL_KEY
from crdtdoc.idset import IdSet
from crdtdoc.roots import DELETIONS_ROOT, NOTES_ROOT
from crdtdoc.structs import DocumentStructs, StructIndex
from crdtdoc.updates import Item
from crdtdoc.versions import Version

Id = tuple[int, int]


@dataclass
class Step:
    """One step of the room's history: `client`'s writes `[start, end)` to `root`, or (with
    `deletes`) the deletions one entry of the deletions log records (`root` is then None)."""

    client: int | None  # None: deletions no log entry claims
    start: int
    end: int
    root: str | None
    deletes: IdSet
    refs: list[Id]
    deps: set[int]
    rank: int = 0


WROTE_ON = "wrote on it"
"""`HistoryEntry.basis` of a change written on the work (or after one of its writer's that
was): exact, read off the document."""
HAD_BEEN_SENT = "had been sent it"
"""`HistoryEntry.basis` of a change whose writer, the hub recorded, had been sent the work
before the change arrived (or written after one such of its writer's, or on one): it may have
read it. A writer the hub recorded but does not list so had surely not been sent the work."""


@dataclass(frozen=True)
class HistoryEntry:
    """One step that changed an artifact: the version it led to, who made it, and what."""

    version: str  # token of the version just after this step (`Replica.at` shows it)
    agent: str | None  # None: a deletion no agent recorded, or a client with no agent name
    client_id: int | None
    changes: tuple[Change, ...]
    clock: int | None = None  # the first clock of the step's writes (None: nobody's deletions)
    basis: str | None = None  # in `built_on` and `descendants`: WROTE_ON or HAD_BEEN_SENT
    collected: bool = False  # some of its text is no longer held: its changes read short

    def describe(self) -> str:
        """One line per change, as the change feed words them, then `  at TOKEN` (and the
        basis, in parentheses, when it has one)."""
        said = {HAD_BEEN_SENT: f"{HAD_BEEN_SENT} before writing: may have read it"}
        at = f"  at {self.version}"
        if self.basis:
            at += f" ({said.get(self.basis, self.basis)})"
        if self.collected:
            at += " (some of its deleted text was collected: it reads short here)"
        return "\n".join([*(c.describe() for c in self.changes), at])


class RoomHistory:
    """The steps of one document (a whole-state update of a document that keeps history)."""

    def __init__(self, doc: DocumentStructs, deleted: IdSet) -> None:
        self.doc = doc
        self.deleted = deleted

    @functools.cached_property
    def steps(self) -> list[Step]:
        """The steps in history order (worked out on first use)."""
        return _steps(self.doc, self.deleted)

    @functools.cached_property
    def _owners(self) -> dict[int, tuple[list[int], list[int]]]:
        """client -> (start clocks, step numbers) of its write steps, by clock."""
        owners: dict[int, list[tuple[int, int]]] = {}  # client -> [(start, step number)]
        for number, step in enumerate(self.steps):
            if step.client is not None and step.root != DELETIONS_ROOT:
                owners.setdefault(step.client, []).append((step.start, number))
        for runs in owners.values():
            runs.sort()
        return {c: ([s for s, _ in runs], [n for _, n in runs]) for c, runs in owners.items()}

    def step_of(self, client: int, clock: int) -> int | None:
        """The number of the step that wrote id `client:clock`."""
        owned = self._owners.get(client)
        if not owned:
            return None
        at = bisect.bisect_right(owned[0], clock) - 1
        if at < 0:
            return None
        number = owned[1][at]
        return number if clock < self.steps[number].end else None

    def versions(self, wanted: set[int]) -> dict[int, Version]:
        """The version after each step numbered in `wanted`, and after the step before each."""
        needed = wanted | {n - 1 for n in wanted if n > 0}
        out: dict[int, Version] = {}
        clocks: dict[int, int] = {}
        deleted = IdSet()
        for number, step in enumerate(self.steps):
            if step.client is not None and step.end > clocks.get(step.client, 0):
                clocks[step.client] = step.end
            if step.deletes:
                deleted.update(step.deletes)
            if number in needed:
                out[number] = Version(dict(clocks), deleted.copy())
        return out

    def collected(self, step: Step) -> bool:
        """Whether content `step` wrote or deleted is no longer held (collected: a hub's history
        horizon passed it, or a document that keeps no history), so its changes read short."""
        index = self.doc.index
        ranges = [(step.client, step.start, step.end)] if step.root != DELETIONS_ROOT else []
        for client, lo, hi in [*ranges, *step.deletes]:
            if client is not None and any(
                item.content in (DELETED, GC) for item in index.overlapping(client, lo, hi)
            ):
                return True
        return False

    def touches(self, step: Step, artifact: str) -> bool:
        """Whether `step` wrote to or deleted from `artifact`."""
        if step.root == artifact:
            return True
        index = self.doc.index
        for client, lo, hi in step.deletes:
            for item in index.overlapping(client, lo, hi):
                if index.root(item) == artifact:
                    return True
        return False


def _segments(doc: DocumentStructs) -> list[Step]:
    """Cuts each client's writes into steps (see the module's docstring); the deletions log's
    entries become deletion steps."""
    steps: list[Step] = []
    logged = {(client, clock): ds for client, clock, ds in doc.deleters}
    index = doc.index
    gates = _gate_items(doc)
    current: Step | None = None
    right: object = None  # the right origin of the current step's last item
    for item in doc.items:
        if item.content in (GC, SKIP):
            current = None
            continue
        root = index.root(item)
        if (  # typing on where the step stands: what an engine may merge into one struct, so
            # a step must not depend on whether it did
            current is not None
            and current.client == item.client
            and current.root == root
            and current.end == item.clock
            and item.origin == (item.client, item.clock - 1)
            and item.right_origin == right
        ):
            current.end = item.clock + item.length
            continue
        right = item.right_origin
        refs = [
            ref
            for ref in (item.origin, item.right_origin, item.parent, *_gated_by(item, index, gates))
            if isinstance(ref, tuple) and ref[0] != item.client
        ]
        if root == DELETIONS_ROOT:
            current = None
            for clock in range(item.clock, item.clock + item.length):
                ds = logged.get((item.client, clock), IdSet())
                steps.append(Step(item.client, clock, clock + 1, root, ds, refs, set()))
                refs = []  # the entries after the first follow it
            continue
        if (
            current is None
            or refs
            or current.client != item.client
            or current.root != root
            or current.end != item.clock
        ):
            current = Step(
                item.client, item.clock, item.clock + item.length, root, IdSet(), refs, set()
            )
            steps.append(current)
        else:
            current.end = item.clock + item.length
    return steps


def _gate_items(doc: DocumentStructs) -> dict[tuple[str, ...], list[Item]]:
    """The entries a review gate's entries answer (`crdtdoc.gates`): each spec's freeze
    proposal, each task's completions, by (root, key path)."""
    index = doc.index
    out: dict[tuple[str, ...], list[Item]] = {}
    for item in doc.items:
        key = index.sub(item) if item.content in (ANY, JSON) else None
        if key is None:
            continue
        path = index.path(item)
        if key == PROPOSAL_KEY and not path:
            out.setdefault((index.root(item) or "", PROPOSAL_KEY), []).append(item)
        elif len(path) == 2 and path[1] == "completions":
            out.setdefault((index.root(item) or "", path[0], "completions"), []).append(item)
    return out


def _gated_by(item: Item, index: StructIndex, gates: dict[tuple[str, ...], list[Item]]) -> list[Id]:
    """What an approval or a verification was written after, though it refers to none of it:
    the freeze proposal it approves, the completions made before it that it verifies. Without
    these, history could list an approval before the proposal it answers."""
    if not gates or item.content not in (ANY, JSON):
        return []
    key = index.sub(item)
    if key is None:
        return []
    root, path = index.root(item) or "", index.path(item)
    if key.startswith(APPROVAL_PREFIX) and not path:
        return [(p.client, p.clock) for p in gates.get((root, PROPOSAL_KEY), ())]
    if len(path) == 2 and path[1] == "verifications":
        at = _written_at(item)
        completions = gates.get((root, path[0], "completions"), ())
        return [
            (c.client, c.clock) for c in completions if at is None or (_written_at(c) or 0.0) <= at
        ]
    return []


def _written_at(item: Item) -> float | None:
    """The time an entry says it was written (its "at"), if it says."""
    value = item.value[-1] if isinstance(item.value, list) and item.value else None
    at = value.get("at") if isinstance(value, dict) else None
    return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None


def _steps(doc: DocumentStructs, deleted: IdSet) -> list[Step]:
    """The document's steps in history order, each with its dependencies (step numbers)."""
    steps = _segments(doc)
    by_client: dict[int, list[int]] = {}
    for number, step in enumerate(steps):
        if step.client is not None:
            by_client.setdefault(step.client, []).append(number)
    starts = {c: [steps[n].start for n in ns] for c, ns in by_client.items()}

    def owners(client: int, lo: int, hi: int) -> list[int]:
        """The steps that wrote `client`'s ids [lo, hi)."""
        numbers = by_client.get(client, [])
        at = max(bisect.bisect_right(starts.get(client, []), lo) - 1, 0)
        out = []
        while at < len(numbers) and steps[numbers[at]].start < hi:
            if steps[numbers[at]].end > lo:
                out.append(numbers[at])
            at += 1
        return out

    claimed = IdSet()
    for numbers in by_client.values():
        for before, number in zip([None, *numbers], numbers, strict=False):
            step = steps[number]
            if before is not None:
                step.deps.add(before)
            for client, clock in step.refs:
                step.deps.update(owners(client, clock, clock + 1))
            for client, lo, hi in step.deletes:
                step.deps.update(owners(client, lo, hi))
            if step.deletes:
                claimed.update(step.deletes)
    for client, lo, hi in deleted.difference(claimed):
        ds = IdSet()
        ds.add(client, lo, hi)
        steps.append(Step(None, 0, 0, None, ds, [], set(owners(client, lo, hi))))
    _rank(steps)
    steps = _join_commits(steps, by_client)
    _rank(steps)
    order = sorted(
        range(len(steps)),
        key=lambda n: (
            steps[n].rank,
            steps[n].client is None,
            steps[n].client or 0,
            steps[n].start,
        ),
    )
    renumber = {old: new for new, old in enumerate(order)}
    ordered = [steps[n] for n in order]
    for step in ordered:
        step.deps = {renumber[d] for d in step.deps}
    return ordered


def _join_commits(steps: list[Step], by_client: dict[int, list[int]]) -> list[Step]:
    """Joins each write step to the deletions-log entry written right after it when that entry
    records what the same commit deleted (replacing text or a map value deletes and writes at
    once): then whoever saw the writing saw the deleting. An entry right after a write may also
    record a later commit that only deleted; it is joined only when all it deleted could have
    been there before the write (written by steps ranked no later, and none by the write
    itself: a commit does not delete what it writes), else it stays a step."""
    into: dict[int, int] = {}  # log entry step -> the write step it joins
    for numbers in by_client.values():
        for write, entry in itertools.pairwise(numbers):
            w, e = steps[write], steps[entry]
            if e.root != DELETIONS_ROOT or w.root == DELETIONS_ROOT or e.start != w.end:
                continue
            own = any(c == w.client and lo < w.end and hi > w.start for c, lo, hi in e.deletes)
            if not own and all(steps[d].rank <= w.rank for d in e.deps if d != write):
                into[entry] = write
    if not into:
        return steps
    for entry, write in into.items():
        w, e = steps[write], steps[entry]
        w.deletes = w.deletes.union(e.deletes)
        w.end = e.end
        w.deps |= e.deps - {write}
    kept = [n for n in range(len(steps)) if n not in into]
    renumber = {old: new for new, old in enumerate(kept)}
    for entry, write in into.items():
        renumber[entry] = renumber[write]
    joined = [steps[n] for n in kept]
    for number, step in enumerate(joined):
        step.deps = {renumber[d] for d in step.deps} - {number}
    return joined


def _rank(steps: list[Step]) -> None:
    """Sets each step's rank: one more than the highest of its dependencies' (0 without).
    Depth first, without recursion (histories run to hundreds of thousands of steps)."""
    NEW, OPEN, DONE = 0, 1, 2
    state = [NEW] * len(steps)
    for first in range(len(steps)):
        if state[first] != NEW:
            continue
        state[first] = OPEN
        stack = [(first, iter(steps[first].deps))]
        while stack:
            number, deps = stack[-1]
            for dep in deps:
                if state[dep] == NEW:  # (OPEN: a circle, which no document holds; ignored)
                    state[dep] = OPEN
                    stack.append((dep, iter(steps[dep].deps)))
                    break
            else:
                stack.pop()
                ranks = [steps[d].rank for d in steps[number].deps if state[d] == DONE]
                steps[number].rank = max(ranks) + 1 if ranks else 0
                state[number] = DONE


def artifact_history(
    history: RoomHistory, artifact: str, limit: int | None
) -> list[tuple[int, Version, list[Change]]]:
    """The steps that changed `artifact` (the last `limit` of them): see `described`."""
    numbers = [n for n, step in enumerate(history.steps) if history.touches(step, artifact)]
    if limit is not None:
        numbers = numbers[-limit:] if limit > 0 else []
    return described(history, numbers, {artifact})


def described(
    history: RoomHistory, numbers: list[int], artifacts: set[str] | None
) -> list[tuple[int, Version, list[Change]]]:
    """Each step of `numbers` with the version after it and its changes (to `artifacts`, or to
    any artifact when None), raw, as `changes_between` reads them."""
    versions = history.versions(set(numbers))
    out = []
    for number in numbers:
        after = versions[number]
        before = versions.get(number - 1, Version())
        changes = [
            c
            for c in changes_between(history.doc, before, after.deleted, until=after)
            if (c.artifact in artifacts if artifacts is not None else c.artifact != NOTES_ROOT)
        ]
        step = history.steps[number]
        if step.client is None:  # nobody recorded these deletions
            changes = [replace(c, agent=None, client_id=None) for c in changes]
        out.append((number, after, changes))
    return out

"""What others built on an agent's work: the steps that depend on it, read off the document
(exact), and, with the hub's record of what each writer had been sent (`crdtdoc.provenance`),
the steps whose writers had been sent it (an upper bound of who read it). `Replica.built_on`
and `descendants` answer with these; the command line and the MCP server word them with
`record_notes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from crdtdoc.history import HAD_BEEN_SENT, WROTE_ON, HistoryEntry, RoomHistory
from crdtdoc.provenance import Provenance
from crdtdoc.roots import BOOKKEEPING_MAPS
from crdtdoc.versions import Version


def work_since(
    history: RoomHistory, clients: frozenset[int], since: Version, until: Version | None = None
) -> list[int]:
    """The steps `clients` wrote (or deleted with) since `since` (and by `until`, if given)."""
    clocks = since.clocks
    last = until.clocks if until is not None else None
    return [
        n
        for n, step in enumerate(history.steps)
        if step.client in clients
        and step.end > clocks.get(step.client, 0)
        and (last is None or step.start < last.get(step.client, 0))
    ]


class BuiltOn(list[HistoryEntry]):
    """What `Replica.built_on` and `descendants` answer: the entries, oldest first, and
    whether the hub's record was used (`recorded`) and how many later changes by others it
    does not cover (`unrecorded`: made through a hub that does not record, by the hub itself,
    before the record began or past its horizon; judged from the document alone)."""

    def __init__(
        self, entries: Iterable[HistoryEntry] = (), recorded: bool = False, unrecorded: int = 0
    ) -> None:
        super().__init__(entries)
        self.recorded = recorded
        self.unrecorded = unrecorded


def built_on(
    history: RoomHistory,
    work: list[int],
    own: frozenset[int],
    provenance: Provenance | None = None,
) -> dict[int, str]:
    """The steps, by other clients than `own` (the work's agent's), built on the steps `work`,
    each with its basis, in history order:

    - `WROTE_ON`: it refers to what the work wrote (writes next to it, inside it, deletes it),
      or comes after a step of its own client that does, or after one that depends so in turn.
      Exact, from the document.
    - `HAD_BEEN_SENT` (with the hub's `provenance`): its writer had been sent some of the work
      before the write arrived (or it depends on such a step as above). An upper bound of who
      read the work: a step the hub recorded that is not listed was written without it.

    Without provenance, "who had seen it" is a lower bound: an agent that read the work and
    wrote elsewhere, touching nothing of it, is not found. Steps the hub did not record (made
    before it recorded, through a hub that does not) are judged by the document alone."""
    steps = history.steps
    later: dict[int, list[int]] = {}
    for number, step in enumerate(steps):
        for dep in step.deps:
            later.setdefault(dep, []).append(number)
    clients = own
    chosen = set(work)

    def follows(before: int, after: int) -> bool:
        """Whether a dependency carries the work on: not from the agent's own step to a later
        step of its own outside the work (its next change, left out by `until`)."""
        return not (
            steps[before].client in clients
            and steps[after].client in clients
            and after not in chosen
        )

    structural = _closure(later, work, follows)
    found = {n: WROTE_ON for n in structural if steps[n].client not in clients}
    if provenance is not None and work:
        first: dict[int, int] = {}
        for n in work:
            client = steps[n].client
            if client is not None:
                first[client] = min(first.get(client, steps[n].start), steps[n].start)
        sent = [
            n
            for n, step in enumerate(steps)
            if n not in structural
            and step.client is not None
            and step.client not in clients
            and provenance.may_have_seen(step.client, step.start, step.end, first)
        ]
        for n in _closure(later, sent, follows):
            if n not in found and steps[n].client not in clients:
                found[n] = HAD_BEEN_SENT
    return dict(sorted(found.items()))


def unrecorded_after(
    history: RoomHistory,
    work: list[int],
    own: frozenset[int],
    provenance: Provenance,
    found: dict[int, str],
) -> list[int]:
    """The steps by others that neither come before `work` (what it depends on) nor are in
    `found`, and that the record does not cover: whether their writers had been sent the work is
    not known. Bookkeeping (names, registrations) is left out."""
    if not work:
        return []
    steps = history.steps
    before = set(work)
    frontier = list(work)
    while frontier:
        for dep in steps[frontier.pop()].deps:
            if dep not in before:
                before.add(dep)
                frontier.append(dep)
    return [
        n
        for n, step in enumerate(steps)
        if n not in found
        and n not in before
        and step.client is not None
        and step.client not in own
        and step.root not in BOOKKEEPING_MAPS
        and not provenance.overlapping(step.client, step.start, step.end)
    ]


def record_notes(found: BuiltOn, failure: Exception | None) -> list[str]:
    """What `crdtdoc built-on` and the MCP tool say besides the entries: that the hub's record
    could not be read (`failure`: only changes written on the work are listed), or how many
    later changes it does not cover."""
    if failure is not None:
        reason = str(failure)
        if "unknown operation" in reason:
            reason = "this hub does not record it (a crdtdoc hub older than the record)"
        return [
            f"(what each writer had been sent is not known: {reason}; listing only changes "
            "written on the work)"
        ]
    if found.unrecorded:
        return [
            f"({found.unrecorded} other change(s) by others are not in the hub's record (made "
            "before it recorded, through a hub that does not, or past its horizon): listed "
            "only if written on the work)"
        ]
    return []


def _closure(
    later: dict[int, list[int]], start: list[int], follows: Callable[[int, int], bool]
) -> set[int]:
    """`start` and every step that depends on one of them, directly or not, through the
    dependencies `follows` lets through."""
    reached = set(start)
    frontier = list(start)
    while frontier:
        step = frontier.pop()
        for after in later.get(step, ()):
            if after not in reached and follows(step, after):
                reached.add(after)
                frontier.append(after)
    return reached


def step_numbered(history: RoomHistory, client: int, clock: int) -> int | None:
    """The number of the step that starts at `client:clock` (a write or a deletions-log
    entry), if any."""
    for number, step in enumerate(history.steps):
        if step.client == client and step.start == clock:
            return number
    return None

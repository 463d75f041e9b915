"""`HistoryReads`: the room's past as a replica reads it: its history in steps, blame's
positions, and reverting an agent's work (`crdtdoc.history`, `crdtdoc.blame`,
`crdtdoc.revert`). Reading a whole past version (`Replica.at`) is the layer above's: it makes a
replica.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from pycrdt import Text

from crdtdoc.errors import HistoryUnavailable, NotFound, UsageError
from crdtdoc.replica.remote import RemoteUpdates
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.built_on import BuiltOn
    from crdtdoc.changes import Change
    from crdtdoc.feed import ArtifactReader
    from crdtdoc.history import HistoryEntry, RoomHistory
    from crdtdoc.provenance import Provenance
    from crdtdoc.revert import RevertHost, RevertPlan, RevertResult


def artifact_names(on: Iterable[object]) -> set[str]:
    """The names of `on` (artifacts or names); raises `CrdtdocError` for anything else."""
    names = set()
    for artifact in on:
        name = artifact if isinstance(artifact, str) else getattr(artifact, "name", None)
        if not isinstance(name, str):
            raise UsageError(f"on= takes artifacts or their names, not {artifact!r}")
        names.add(name)
    return names


class HistoryReads(RemoteUpdates):
    """History, blame positions and reverts, read off this replica's document."""

    _past_read: tuple[int, RoomHistory] | None = None  # (generation, its document read)

    def history(self, artifact: str, *, limit: int | None = 50) -> list[HistoryEntry]:
        """The steps that changed `artifact`, oldest first (the last `limit`; None: all), each
        with the version it led to (`at` shows it), who made it and what it changed, in the
        artifact's terms. The order is causal and the same on every replica
        (`crdtdoc.history`); the text of deleted content needs `history=True`."""
        from crdtdoc.history import artifact_history

        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise UsageError(f"limit must be a non-negative int or None, got {limit!r}")
        room = self.room_history()
        return self._entries(room, artifact_history(room, artifact, limit))

    def built_on(
        self,
        agent: str,
        since: Version | str | None = None,
        *,
        until: Version | str | None = None,
        provenance: Provenance | None = None,
    ) -> BuiltOn:
        """The changes other agents made on top of what `agent` did since `since` (a Version or
        token; None: all of it), oldest first, each with its `basis`: `"wrote on it"` (writing
        next to or inside it, deleting it, or after a change of theirs that did: exact) or,
        given the hub's `provenance` (`ConnectedReplica.provenance()`), `"had been sent it"`
        (its writer had been sent the work before writing: it may have read it; a change the
        hub recorded and that is not listed was made without it). What to look at before
        reverting `agent`'s work, or to revert along with it (`crdtdoc.history.built_on`).
        `until` (a version or token) leaves out the agent's work after it: with the tokens
        `history` lists before and after one change, what was built on that change. The list
        says whether the record was used (`recorded`) and how many later changes by others
        it does not cover (`unrecorded`: judged from the document alone)."""
        from crdtdoc.built_on import work_since

        clients = self._agent_clients(agent)
        room = self.room_history()
        last = self._since(until) if until is not None else None
        work = work_since(room, clients, self._since(since), last)
        return self._dependents(room, work, clients, provenance)

    def descendants(self, change: HistoryEntry, *, provenance: Provenance | None = None) -> BuiltOn:
        """The changes other agents made on top of one change (an entry of `history` or
        `built_on`), as `built_on` lists them."""
        from crdtdoc.built_on import step_numbered
        from crdtdoc.history import HistoryEntry

        if not isinstance(change, HistoryEntry):
            raise UsageError(f"descendants takes a HistoryEntry, got {change!r:.80}")
        room = self.room_history()
        client, clock = change.client_id, change.clock
        number = None
        if client is not None and clock is not None:
            number = step_numbered(room, client, clock)
        if client is None or number is None:
            raise UsageError("that change is not in this replica's history (or names no writer)")
        writer = self.agents().get(client)
        own = self._agent_clients(writer) if writer is not None else frozenset()
        return self._dependents(room, [number], own | {client}, provenance)

    def _dependents(
        self,
        room: RoomHistory,
        work: list[int],
        own: frozenset[int],
        provenance: Provenance | None,
    ) -> BuiltOn:
        """`built_on`'s answer for the steps `work` of the agent writing as `own`."""
        from crdtdoc.built_on import BuiltOn, built_on, unrecorded_after
        from crdtdoc.history import described
        from crdtdoc.provenance import Provenance

        if provenance is not None and not isinstance(provenance, Provenance):
            raise UsageError(f"provenance must be a Provenance, got {provenance!r:.80}")
        found = built_on(room, work, own, provenance)
        entries = self._entries(room, described(room, list(found), None), found)
        if provenance is None:
            return BuiltOn(entries)
        return BuiltOn(entries, True, len(unrecorded_after(room, work, own, provenance, found)))

    def _entries(
        self,
        room: RoomHistory,
        steps: list[tuple[int, Version, list[Change]]],
        basis: dict[int, str] | None = None,
    ) -> list[HistoryEntry]:
        """History entries of described steps, in the artifacts' terms (steps that changed
        nothing an artifact shows are left out)."""
        from crdtdoc.feed import in_artifact_terms
        from crdtdoc.history import HistoryEntry

        names = self.agents()
        entries = []
        for number, after, raw in steps:
            token = after.token()
            terms = in_artifact_terms(raw, cast("ArtifactReader", self))
            stated = [replace(c, version=token) for c in terms]
            if stated:
                step = room.steps[number]
                client = step.client
                agent = names.get(client) if client is not None else None
                how = basis.get(number) if basis is not None else None
                clock = step.start if client is not None else None
                gone = room.collected(step)
                entries.append(HistoryEntry(token, agent, client, tuple(stated), clock, how, gone))
        return entries

    def revert(
        self,
        agent: str,
        since: Version | str | None = None,
        *,
        on: Iterable[object] = (),
        note: str | None = None,
    ) -> RevertResult:
        """Undoes what `agent` did since `since` (a Version or token; None: all of it) in the
        artifacts `on` (all when empty), with ordinary edits by this replica's agent in one
        noted transaction that merges like any other: what `agent` wrote is taken out, what it
        deleted is written back, and what others did meanwhile stays (`crdtdoc.revert`).
        Parts others built on are kept and listed in the result's `kept`. Needs
        `history=True` to write deleted text back."""
        from crdtdoc.revert import revert_work

        if self._txn_depth:
            raise UsageError(
                "revert writes its own transaction; to write it inside another (a guarded "
                "commit), use plan_revert(...) before it and plan.apply(replica) inside it"
            )
        return revert_work(
            cast("RevertHost", self),
            _agent_arg(agent),
            self._since(since),
            self.artifacts_named(on),
            note,
        )

    def plan_revert(
        self, agent: str, since: Version | str | None = None, *, on: Iterable[object] = ()
    ) -> RevertPlan:
        """What `revert` would do, without writing anything: what it would take out, put back
        and keep (`RevertPlan`); `plan.apply(replica)` writes it, for example inside a guarded
        commit. Plan and apply with nothing changing the replica in between."""
        from crdtdoc.revert import plan_revert

        return plan_revert(
            cast("RevertHost", self),
            _agent_arg(agent),
            self._since(since),
            self.artifacts_named(on),
        )

    def _since(self, since: object) -> Version:
        """`since` as a Version this replica has seen (None: the beginning)."""
        version = Version() if since is None else version_of(since)
        if not version <= self.version():
            raise HistoryUnavailable(
                "this replica has not seen that version (it is not before or equal to the "
                "replica's own); sync first, or ask a replica that has seen it"
            )
        return version

    def _agent_clients(self, agent: object) -> frozenset[int]:
        """The client ids `agent` wrote under; `NotFound` naming the room's agents if none."""
        whose = _agent_arg(agent)
        names = self.agents()
        clients = frozenset(c for c, n in names.items() if n == whose)
        if not clients:
            known = ", ".join(sorted(set(names.values()))) or "none"
            raise NotFound(
                f"no agent named {whose!r} has written in this room (its agents: {known})"
            )
        return clients

    def artifacts_named(self, on: Iterable[object]) -> set[str]:
        """The names of the artifacts `on` (artifacts or names); `NotFound`, naming the room's
        artifacts, for a name the room has none of (of any kind)."""
        if isinstance(on, str):
            raise UsageError(f"on= takes a list of artifacts or names, not one str: on=[{on!r}]")
        names = artifact_names(on)
        missing = sorted(names - set(self.artifacts()))
        if missing:
            known = ", ".join(sorted(self.artifacts())) or "none"
            raise NotFound(
                f"this room has no artifact named {missing[0]!r} (its artifacts: {known})"
            )
        return names

    def text_offsets(self, name: str, ids: list[tuple[int, int]]) -> list[int]:
        """Where each live item id stands in the text root `name`, as engine offsets: their
        order is the text's (`crdtdoc.blame`)."""
        from crdtdoc.replica.snapshots import text_offsets

        return text_offsets(self.artifact_root(name, Text), ids)

    def room_history(self) -> RoomHistory:
        """This replica's document read as steps (`crdtdoc.history.RoomHistory`)."""
        from crdtdoc.history import RoomHistory
        from crdtdoc.structs import read_structs

        self._sync_point()
        cached = self._past_read
        if cached is not None and cached[0] == self.generation and not self._txn_depth:
            return cached[1]  # the document has not changed since: read once, asked often
        texts = frozenset(n for n, kind in self._root_kinds.items() if kind is Text)
        room = RoomHistory(read_structs(self._doc.get_update(), texts), self._deleted.copy())
        if not self._txn_depth:
            self._past_read = (self.generation, room)
        return room

    def roots_touched(self, since: Version, *, but: int | None = None) -> set[str | None]:
        """The roots (artifacts and bookkeeping) of the ids added since `since` (by clients
        other than `but`) and of the ids deleted since, by anyone: cheap, from the item index,
        and conservative (None: ids whose root is not known)."""
        index = self.item_index()
        now = self.version()
        touched: set[str | None] = set()
        for client, end in now.clocks.items():
            start = since.clocks.get(client, 0)
            if client != but and end > start:
                touched |= index.roots_of_range(client, start, end)
        for client, start, end in now.deleted.difference(since.deleted):
            touched |= index.roots_of_range(client, start, end)  # whoever deleted them
        return touched


def _agent_arg(agent: object) -> str:
    if not isinstance(agent, str) or not agent:
        raise UsageError(f"an agent is named by a non-empty str, not {agent!r:.80}")
    return agent


def version_of(version: object) -> Version:
    """A `Version` from a Version or a version token; `UsageError` for anything else."""
    if isinstance(version, str):
        return Version.from_token(version)
    if not isinstance(version, Version):
        raise UsageError(f"expected a Version or a version token, got {type(version).__name__}")
    return version

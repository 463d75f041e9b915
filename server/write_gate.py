"""`WriteGate`: the room's authorization step, between the semantic gate and the store.

Every inbound update passes, in order (docs/SECURITY.md, "The write path"):

1. budgets: the peer's update rate (`crdtdoc.server.limits`), the room's size;
2. parse: `crdtdoc.updates.parse_update`, bounded, typed errors only;
3. arrival checks (`authorize`): read-only tokens, client ids owned by another identity,
   deletions (`crdtdoc.server.access.judge_deletes`);
4. the causal buffer: the update waits until what it builds on is there;
5. the semantic gate (`crdtdoc.semantics`) and the item rules (`judge`, installed as the
   replica's hook: `crdtdoc.server.access.judge_items`), just before the engine applies it;
6. apply, then store and fan out (`crdtdoc.server.room`).

The gate keeps what the rules need to know about the room: which identity introduced each
client id, who deleted what, the artifact kinds recorded and the frozen specs.
"""

from __future__ import annotations

import contextlib

from crdtdoc.errors import CrdtdocError, Forbidden, RoomFull
from crdtdoc.gates import Proposal
from crdtdoc.itemindex import Locator
from crdtdoc.replica import Replica
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT
from crdtdoc.server.access import (
    ARTIFACT_KINDS,
    DeletionLedger,
    RoomFacts,
    Writer,
    deletion_claims,
    deletion_ledger,
    judge_deletes,
    judge_items,
)
from crdtdoc.server.peer import Peer
from crdtdoc.server.review_gates import GateFacts
from crdtdoc.updates import Item, ParsedUpdate, carried, parse_update


class WriteGate:
    """Authorizes the updates of one room's peers (see the module)."""

    def __init__(self, room: str, replica: Replica, max_room_bytes: int) -> None:
        self.room = room
        self.replica = replica
        self.max_room_bytes = max_room_bytes
        self.owners: dict[int, str] = {}  # client id -> the identity that introduced it
        self._ledger = DeletionLedger()
        self._frozen: frozenset[str] | None = None
        self._gates = GateFacts()  # the review gates' facts, read with the frozen specs
        self._kinds: dict[str, str] | None = None  # artifact kinds recorded (cached)
        replica.judge = self.judge

    def restore(self) -> None:
        """Learns a loaded room: registry names were checked against each writer's token when
        written, and each deletions-log entry was its appender's."""
        self.owners = dict(self.replica.agents())
        self._ledger = deletion_ledger(self.replica, self.owners)
        self.forget()

    def learn(self, update: bytes) -> None:
        """An update another hub judged and stored: binds the client ids it registers to their
        identities, and learns the deletions its log entries claim."""
        if AGENTS_ROOT.encode() in update:
            for client, agent in self.replica.agents().items():
                self.owners.setdefault(client, agent)
        items = parse_update(update, details=True).items or []
        for client, claimed in deletion_claims(items, self.replica.item_index()):
            owner = self.owners.get(client)
            if owner is not None:
                self._ledger.record(owner, claimed)

    def forget(self) -> None:
        """Artifact kinds or a freeze may have changed: read them again when next needed."""
        self.forget_freeze()
        self._kinds = None

    def forget_freeze(self) -> None:
        """A spec's freeze or its gate may have changed (the artifact kinds have not): read
        them again when next needed."""
        self._frozen = None

    def authorize(
        self, peer: Peer, update: bytes, room_bytes: int, parsed: ParsedUpdate | None = None
    ) -> ParsedUpdate:
        """Step 3: read-only tokens, room size, client-id ownership and deletions. Nothing new
        is judged, so a read-only client's empty sync step 2 passes. Returns the parsed update
        (for applying it without parsing again); `parsed`, if given, is `update` parsed with
        its details."""
        if parsed is None:
            parsed = parse_update(update, details=True)
        grant, identity = peer.grant, peer.identity
        if not self.replica.is_news(parsed):
            if identity is not None and parsed.delete_set:  # deleted by another one first
                self._ledger.record(identity, parsed.delete_set)
            return parsed
        if grant is not None and grant.read_only:
            raise Forbidden("this token is read-only: writes are refused")
        if room_bytes + len(update) > self.max_room_bytes:
            raise RoomFull(
                f"room {self.room!r} would exceed {self.max_room_bytes} bytes; "
                "the hub refuses to grow it further"
            )
        state, deleted = self.replica.applied()
        fresh = [c for c, s in parsed.structs.items() if s.end > state.get(c, 0)]
        if identity is not None:
            for client in fresh:
                owner = self.owners.get(client)
                if owner is not None and owner != identity:
                    raise Forbidden(
                        f"client id {client} belongs to {owner}; an agent writes only under its "
                        "own client ids"
                    )
        if parsed.delete_set:
            # Deleting what the update itself adds is judged with those items, as they apply.
            # (Only ids the update adds: a struct re-sent under an id the room has is skipped by
            # the engines, so deleting that id deletes what the room holds, and is judged.)
            deletes = parsed.delete_set.difference(deleted).difference(carried(parsed, state))
            if deletes:
                writer = self._writer(peer, fresh)
                judge_deletes(deletes, self.replica.item_index(), writer, self.facts())
        if identity is not None and parsed.delete_set:
            # all of it: two agents may delete one id concurrently
            self._ledger.record(identity, parsed.delete_set)
        return parsed

    def judge(
        self, items: list[Item], locator: Locator, state: dict[int, int], origin: object
    ) -> None:
        """Step 5, the replica's hook: a peer's items, just before they are applied."""
        if not isinstance(origin, Peer):
            return  # the hub's own writes, or what the store already holds
        identity = origin.identity
        fresh = {i.client for i in items if i.clock + i.length > state.get(i.client, 0)}
        for client in fresh if identity is not None else ():
            owner = self.owners.get(client)
            if owner is not None and owner != identity:  # bound while this update waited
                raise Forbidden(
                    f"client id {client} belongs to {owner}; an agent writes only under its "
                    "own client ids"
                )
        facts = self.facts()
        touched = judge_items(items, locator, state, self._writer(origin), facts)
        if ARTIFACTS_ROOT in touched:
            self.forget()
        elif AGENTS_ROOT in touched or any(facts.kinds.get(str(r)) == "spec" for r in touched):
            self.forget_freeze()  # (a registration may make an approval count)
        if identity is not None:  # bound only now: a refused update binds nothing
            for client in fresh:
                self.owners.setdefault(client, identity)

    def facts(self) -> RoomFacts:
        if self._kinds is None:
            self._kinds = {
                name: kind
                for name, kind in self.replica.artifacts().items()
                if kind in ARTIFACT_KINDS
            }
        if self._frozen is None:
            self._frozen = frozenset(name for name in self._kinds if self._is_frozen(name))
            self._gates = GateFacts(
                self._proposals(), self._completers, self._task_exists, self._has
            )
        return RoomFacts(self._kinds, self._frozen, self._gates)

    def _proposals(self) -> dict[str, Proposal]:
        """The specs' freeze proposals (crdtdoc.gates), read with the frozen specs."""
        out = {}
        for name, kind in (self._kinds or {}).items():
            if kind == "spec":
                with contextlib.suppress(CrdtdocError):
                    proposal = self.replica.spec(name).proposal()
                    if proposal is not None:
                        out[name] = proposal
        return out

    def _task_exists(self, tasks: str, task_id: str) -> bool:
        try:
            return task_id in self.replica.tasks(tasks)
        except CrdtdocError:
            return False

    def _has(self, client: int, clock: int) -> bool:
        return clock < self.replica.applied()[0].get(client, 0)

    def _completers(self, tasks: str, task_id: str) -> frozenset[str]:
        """Who completed a task, as the room holds it now (read when a verification comes)."""
        try:
            return frozenset(self.replica.tasks(tasks).get(task_id).completed_by)
        except CrdtdocError:
            return frozenset()

    def _is_frozen(self, name: str) -> bool:
        if self._kinds is None or self._kinds.get(name) != "spec":
            return False
        try:
            return self.replica.spec(name).frozen
        except CrdtdocError:
            return False

    def _writer(self, peer: Peer, fresh: list[int] | None = None) -> Writer:
        """The rights of the author of an update (`fresh`: client ids it introduces)."""
        identity, ledger, replica = peer.identity, self._ledger, self.replica
        if identity is None:
            mine = set(fresh or ())
            return Writer(None, peer.grant, mine.__contains__)
        return Writer(
            identity,
            peer.grant,
            lambda client: self.owners.get(client, identity) == identity,
            lambda claimed: ledger.claim(identity, claimed, replica.applied()[1]),
        )

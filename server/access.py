"""The authorization gate: who may write what, judged by what an update's items *are*.

Runs after the semantic gate (`crdtdoc.semantics`), on items placed by the room's item index
(`crdtdoc.itemindex`), so a map overwrite that names only an origin is judged under the key it
inherits, and an item nested anywhere is judged by its artifact. Items are judged as they are
applied (an update waiting in the causal buffer is judged once what it depends on is there, with
its author's rights); deletions are judged when the update arrives.

The rules, one place for every surface (docs/SECURITY.md has the table):

- artifact scope: a scoped token touches only its artifacts (and bookkeeping, under the rules
  below); frozen specs accept nothing.
- `__crdtdoc_agents`: an entry is `str(client) -> name`, written by that client, naming the
  writer's identity; entries are never deleted, except by their own client.
- `__crdtdoc_artifacts`: an entry is `name -> kind` (a known kind); a kind is set once and never
  changed or deleted (an entry that holds no valid kind may be replaced); a scoped token
  registers only its artifacts.
- `__crdtdoc_notes`: an entry is `{"by", "note", "at", "artifacts"}` signed by the writer's
  identity; notes are never deleted by others.
- `__crdtdoc_deletions`: an entry is an encoded delete set of ids the writer's identity deleted;
  entries are never deleted by others.
- review gates of task lists and specs: `crdtdoc.server.review_gates`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from crdtdoc.contents import ANY, DELETED, GC, SKIP
from crdtdoc.errors import Forbidden
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import ItemIndex, Locator
from crdtdoc.places import Place
from crdtdoc.replica import Replica
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT, DELETIONS_ROOT, INTERNAL_ROOTS, NOTES_ROOT
from crdtdoc.server.review_gates import (
    GateFacts,
    judge_spec_delete,
    judge_spec_item,
    judge_task_delete,
    judge_task_item,
)
from crdtdoc.tokens import Grant
from crdtdoc.updates import Item, decode_delete_set, parse_update

BOOKKEEPING = INTERNAL_ROOTS
"""Roots every writer may add to, under the rules of this module."""
ARTIFACT_KINDS = frozenset({"document", "tasks", "spec", "map"})
"""The kinds `__crdtdoc_artifacts` may record (docs/SCHEMA.md)."""


class DeletionLedger:
    """Who deleted what, as far as the hub knows, so that a deletions-log entry (which
    attributes deletions in every change feed) claims only deletions its writer made, or ones
    nobody is known to have made (deleted before the hub loaded the room, never logged)."""

    def __init__(self) -> None:
        self._by: dict[str, IdSet] = {}
        self._known = IdSet()  # deleted by someone the ledger knows

    def record(self, identity: str, deletes: IdSet) -> None:
        """`identity` sent these deletions: its own, made now or concurrently with another's
        (so never refused), or a replay of what it saw (then it can add its name to them)."""
        mine = self._by.setdefault(identity, IdSet())
        for client, start, end in deletes:
            mine.add(client, start, end)
            self._known.add(client, start, end)

    def claim(self, identity: str, claimed: IdSet, deleted_now: IdSet) -> bool:
        """Whether `identity` may log these deletions as its own."""
        rest = claimed.difference(self._by.get(identity, IdSet()))
        return not rest or (rest.difference(self._known) == rest and rest.issubset(deleted_now))


@dataclass
class Writer:
    """Who sends an update, as the hub knows them."""

    identity: str | None  # the token's agent (None: the hub has no secret)
    grant: Grant | None
    owns: Callable[[int], bool]  # whether a client id is this writer's
    claim: Callable[[IdSet], bool] = lambda claimed: True  # see `DeletionLedger.claim`

    @property
    def scope(self) -> frozenset[str] | None:
        return self.grant.artifacts if self.grant is not None else None


@dataclass(frozen=True)
class RoomFacts:
    """What the rules read about the room: recorded artifact kinds and frozen specs."""

    kinds: Mapping[str, str]
    frozen: frozenset[str]
    gates: GateFacts = field(default_factory=GateFacts)


def judge_items(
    items: list[Item], locator: Locator, state: dict[int, int], writer: Writer, facts: RoomFacts
) -> set[str | None]:
    """Raises `Forbidden` for an item this writer may not add; returns the roots touched."""
    touched: set[str | None] = set()
    claims = IdSet()  # deletions the update's log entries claim, checked once
    kinds = dict(facts.kinds)  # with the artifacts the update itself registers
    gated: set[str] = set()  # "completion", "verification": an update holds one or the other
    fresh = []
    for item in items:
        if item.content in (GC, SKIP) or item.clock + item.length <= state.get(item.client, 0):
            continue
        place = locator.place(item)
        if place is not None and place.collected:
            continue  # dropped by every engine
        root = locator.root(place)
        fresh.append((item, place, root))
        if root == ARTIFACTS_ROOT and place is not None and place.sub and item.content == ANY:
            kinds.setdefault(place.sub, str(item.value[-1]) if item.value else "")
    for item, place, root in fresh:
        touched.add(root)
        _judge_root(root, writer, facts, "add to")
        if root in BOOKKEEPING and place is not None:
            _judge_bookkeeping(root, item, place, writer, facts, claims)
        elif root is not None and place is not None and kinds.get(root) == "tasks":
            entry = judge_task_item(item, place, locator, writer.identity, root, facts.gates)
            gated.add(entry or "")
        elif root is not None and place is not None and kinds.get(root) == "spec":
            judge_spec_item(item, place, writer.identity, root, facts.gates)
    if {"completion", "verification"} <= gated:
        raise Forbidden("a verification comes from another agent than the completion it verifies")
    if claims and not writer.claim(claims):
        raise Forbidden(
            f"attribution refused: the entry claims deletions {writer.identity!r} did not make"
        )
    return touched


def judge_deletes(deletes: IdSet, index: ItemIndex, writer: Writer, facts: RoomFacts) -> None:
    """Raises `Forbidden` for a deletion (of ids not deleted yet) this writer may not make."""
    strict = writer.identity is not None or writer.scope is not None
    for client, start, end in deletes:
        for run_start, _, place in index.runs(client, start, end):
            if place is None:
                if strict:
                    raise Forbidden(
                        f"the update deletes {client}:{run_start}, which this hub does not have "
                        "yet; sync first, then delete"
                    )
                continue
            if place.collected:
                continue
            root = index.root_of_parent(place.parent)
            _judge_root(root, writer, facts, "delete from")
            if root in (NOTES_ROOT, DELETIONS_ROOT) and not writer.owns(client):
                raise Forbidden(f"entries of {root} are deleted only by their author")
            if root == AGENTS_ROOT and not (place.sub == str(client) and writer.owns(client)):
                raise Forbidden("an agent's registry entry is deleted only by its own client")
            if root == ARTIFACTS_ROOT and place.sub in facts.kinds:
                raise Forbidden(
                    f"the kind of artifact {place.sub!r} is recorded once and never deleted"
                )
            kind = facts.kinds.get(root) if root is not None else None
            if kind == "tasks" and root is not None:
                judge_task_delete(place, lambda ref: index.place_of(*ref), root)
            elif kind == "spec" and root is not None:
                judge_spec_delete(place, client, writer.owns, writer.identity, root, facts.gates)


def _judge_root(root: str | None, writer: Writer, facts: RoomFacts, verb: str) -> None:
    scope = writer.scope
    if scope is not None and root not in BOOKKEEPING and (root is None or root not in scope):
        allowed = ", ".join(sorted(scope)) or "nothing"
        raise Forbidden(f"this token may change only {allowed}; the update would {verb} {root}")
    if root in facts.frozen:
        raise Forbidden(f"spec {root!r} is frozen: it accepts no more writes")


def _judge_bookkeeping(
    root: str | None, item: Item, place: Place, writer: Writer, facts: RoomFacts, claims: IdSet
) -> None:
    if root == DELETIONS_ROOT and item.content == DELETED and place.parent == root:
        return  # an entry its writer replaced before this hub saw it: it claims nothing
    if place.parent != root or item.content != ANY or not item.value:
        raise Forbidden(
            f"{root} holds only crdtdoc's plain entries (any values written directly in it)"
        )
    values: list[object] = item.value
    if root == AGENTS_ROOT:
        name = values[-1]
        if place.sub != str(item.client) or not isinstance(name, str):
            raise Forbidden(
                f"attribution refused: client {item.client} may only register itself, by name"
            )
        if writer.identity is not None and name != writer.identity:
            raise Forbidden(
                f"attribution refused: client {item.client} may only register as "
                f"{writer.identity!r} (its token's agent), not {name!r}; connect with that "
                "agent name"
            )
    elif root == ARTIFACTS_ROOT:
        name, kind = place.sub, values[-1]
        if name is None or kind not in ARTIFACT_KINDS:
            raise Forbidden(
                f"{ARTIFACTS_ROOT} maps artifact names to one of {sorted(ARTIFACT_KINDS)}"
            )
        scope = writer.scope
        if scope is not None and name not in scope:
            raise Forbidden(f"this token may not register artifact {name!r}")
        recorded = facts.kinds.get(name)
        if recorded is not None and recorded != kind:
            raise Forbidden(f"artifact {name!r} is a {recorded}; its kind cannot change")
    elif root == NOTES_ROOT:
        for note in values:
            _judge_note(note, writer)
    elif root == DELETIONS_ROOT:
        for entry in values:
            claimed = decode_delete_set(entry)
            if claimed is None:
                raise Forbidden(f"{DELETIONS_ROOT} holds encoded delete sets")
            for client, start, end in claimed:
                claims.add(client, start, end)


def _judge_note(note: object, writer: Writer) -> None:
    if not (
        isinstance(note, dict)
        and isinstance(note.get("by"), str)
        and isinstance(note.get("note"), str)
        and isinstance(note.get("artifacts", []), list)
        and all(isinstance(a, str) for a in note.get("artifacts", []))
    ):
        raise Forbidden('a note is {"by": str, "note": str, "at": time, "artifacts": [str]}')
    if writer.identity is not None and note["by"] != writer.identity:
        raise Forbidden(f"a note is signed by its writer, {writer.identity!r}")
    # A note may name artifacts its writer may only read: a guarded write depends on them.


def deletion_claims(items: list[Item], index: ItemIndex) -> Iterator[tuple[int, IdSet]]:
    """(appending client, delete set) of each deletions-log entry among applied `items`."""
    for item in items:
        if item.content != ANY or index.root_of(item.client, item.clock) != DELETIONS_ROOT:
            continue
        for entry in item.value or []:
            claimed = decode_delete_set(entry)
            if claimed is not None:
                yield item.client, claimed


def deletion_ledger(replica: Replica, owners: Mapping[int, str]) -> DeletionLedger:
    """The ledger of a room loaded from its store: each deletions-log entry is its appender's."""
    ledger = DeletionLedger()
    items = parse_update(replica.encode_update(), details=True).items or []
    for client, claimed in deletion_claims(items, replica.item_index()):
        owner = owners.get(client)
        if owner is not None:
            ledger.record(owner, claimed)
    return ledger

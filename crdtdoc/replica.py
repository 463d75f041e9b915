"""`Replica`: one agent's local copy of a shared room, and the only code that touches pycrdt.

Every update is parsed and validated (`crdtdoc.updates`) before pycrdt sees it. Updates whose
dependencies are missing wait in the replica's causal buffer and are applied, in dependency order,
once what they need has arrived, because pycrdt does not converge when fed out of order. A pycrdt
panic never escapes: the damaged document is dropped and rebuilt from the last checkpoint plus the
log of committed updates since.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pycrdt import Array, Doc, Map, Subscription, Text, TransactionEvent

from crdtdoc.causal import BufferLimits, CausalBuffer, Shares, Waiting
from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import (
    CrdtdocError,
    InvalidUpdate,
    NotFound,
    ReplicaRebuilt,
    StaleRead,
    StorageError,
    UsageError,
    WrongKind,
)
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import ItemIndex, Locator
from crdtdoc.roots import (
    AGENTS_ROOT,
    ARTIFACTS_ROOT,
    BOOKKEEPING_ARRAYS,
    BOOKKEEPING_MAPS,
    DELETIONS_ROOT,
    INTERNAL_ROOTS,
    NOTES_ROOT,
)
from crdtdoc.safe_read import entry as safe_entry
from crdtdoc.semantics import check_deletions, check_update, written_deletions
from crdtdoc.storage import SavedReplica, read_saved, write_saved
from crdtdoc.textmodel import TextView
from crdtdoc.updates import (
    MAX_CLIENT_ID,
    MAX_CLOCK,
    ClientStructs,
    Item,
    ParsedUpdate,
    decode_state_vector,
    deletes_only,
    encode_state_vector,
    parse_update,
    structs_only,
)
from crdtdoc.values import check_text
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.artifacts.document import Document
    from crdtdoc.artifacts.shared_map import SharedMap
    from crdtdoc.artifacts.spec import InterfaceSpec
    from crdtdoc.artifacts.tasks import TaskList
    from crdtdoc.changes import Change


UpdateListener = Callable[[bytes, bool], None]
"""Called with (update bytes, made locally) after each committed change."""

_EMPTY_UPDATE = b"\x00\x00"
_EMPTY_DELETE_SET = b"\x00"
_MAX_RUN_RANGES = 16  # a run's deletions-log entry starts afresh past this many ranges
_T = TypeVar("_T", Text, "Map[Any]", "Array[Any]")


@dataclass(frozen=True)
class ReplicaLimits:
    """Bounds on what a replica holds for others. Defaults suit an agent process."""

    max_pending_updates: int = 10_000
    """Updates waiting in the causal buffer before `apply_update` refuses more."""
    max_pending_bytes: int = 64 * 1024 * 1024
    """Memory (bytes and their parse, estimated) the causal buffer may take before
    `apply_update` refuses more."""
    max_pending_updates_per_origin: int | None = None
    """Updates one sender (`Replica.pending_holder` of the origin) may have waiting; None: no
    share of its own, only the whole buffer's bound. Trusted data counts only in the whole."""
    max_pending_bytes_per_origin: int | None = None
    """Memory one sender's waiting updates may take; None: only the whole buffer's bound."""
    max_pending_structs_per_origin: int | None = None
    """Structs one sender may have waiting (they are applied all at once when what they wait
    for arrives, at a cost per struct); None: no bound."""
    checkpoint_log_bytes: int = 256 * 1024
    """Committed-update bytes kept since the last checkpoint before taking a new one."""


@dataclass(frozen=True)
class Pending:
    """What waits in the causal buffer and what it waits for."""

    updates: int
    bytes: int
    deletions: IdSet  # deletions held until the items they delete arrive
    missing: IdSet  # ids that must arrive before the waiting data can be applied

    def __bool__(self) -> bool:
        return self.updates > 0 or bool(self.deletions)


KIND_LABELS = {"document": "document", "tasks": "task list", "spec": "spec", "map": "map"}
"""How messages name each kind of artifact."""


def new_client_id(avoid: set[int] | frozenset[int] = frozenset()) -> int:
    """A random 32-bit Yjs client id not in `avoid` (ids Yjs clients pick are 32-bit too)."""
    while True:
        cid = secrets.randbits(32)
        if cid and cid not in avoid:
            return cid


def _deletion_of(client: int, clock: int) -> bytes:
    """The update that deletes the one id `client:clock` (no structs; one delete-set range)."""
    enc = Encoder()
    for n in (0, 1, client, 1, clock, 1):
        enc.write_var_uint(n)
    return enc.to_bytes()


def _one_holder(origin: object) -> Hashable:
    return None


def _after(state: dict[int, int], parsed: ParsedUpdate) -> dict[int, int]:
    """The state vector once `parsed`'s structs are applied."""
    after = dict(state)
    for client, s in parsed.structs.items():
        after[client] = max(after.get(client, 0), s.end)
    return after


def artifact_names(on: Iterable[object]) -> set[str]:
    """The names of `on` (artifacts or names); raises `CrdtdocError` for anything else."""
    names = set()
    for artifact in on:
        name = artifact if isinstance(artifact, str) else getattr(artifact, "name", None)
        if not isinstance(name, str):
            raise UsageError(f"on= takes artifacts or their names, not {artifact!r}")
        names.add(name)
    return names


Judge = Callable[[list[Item], Locator, dict[int, int], object], None]


_FITS: dict[type, frozenset[str]] = {
    Text: frozenset({"text", "types"}),  # characters, embeds, formats, embedded types
    Map: frozenset({"map"}),
    Array: frozenset({"array", "types"}),
}
"""How an artifact's root type may already be used by other clients (`ItemIndex.uses`)."""
_OWN_USE = {Text: "text", Map: "map", Array: "array"}
"""The use that makes a root of that type: a root holding it is that type, and other uses in it
are damage the readers hide (stray items, written before the semantic gate refused them); a
root that others use without it is another type's (nested types alone: a Y.Array of Y.Maps)."""
_USE_NAMES = {
    "map": "a Y.Map (entries under keys)",
    "text": "a Y.Text",
    "array": "a Y.Array",
    "xml": "a Y.XmlFragment (XML elements, as ProseMirror writes)",
    "types": "a sequence of nested types",
}


def _check_name(name: object) -> None:
    """Refuses what cannot name an artifact (a root of the document)."""
    if not isinstance(name, str) or not name:
        raise UsageError("an artifact name must be a non-empty str")
    check_text(name, "the artifact name")
    if name in INTERNAL_ROOTS:
        raise UsageError(f"{name!r} is reserved for crdtdoc's own bookkeeping")


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


class Replica:
    """A local, Yjs-compatible CRDT replica: edit instantly and offline, merge without locks."""

    def __init__(
        self,
        agent: str = "agent",
        *,
        client_id: int | None = None,
        limits: ReplicaLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(agent, str) or not agent.strip():
            raise UsageError("agent must be a non-empty name, for example Replica(agent='alice')")
        check_text(agent, "the agent name")
        if client_id is None:
            client_id = new_client_id()
        elif not isinstance(client_id, int) or not 0 <= client_id < MAX_CLIENT_ID:
            raise UsageError(f"client_id must be an int in [0, 2**53), got {client_id!r}")
        self._agent = agent
        self._limits = limits or ReplicaLimits()
        self._client_id = client_id
        self._state: dict[int, int] = {}
        self._deleted = IdSet()
        self._deletions_changed = 0  # counts changes of `_deleted` (keys `_nothing_new`)
        # (that count, the delete set as Yjs encodes it, as pycrdt does, once asked): `holds`
        self._nothing_new: tuple[int, bytes, bytes | None] | None = None
        limits = self._limits
        self._buffer = CausalBuffer(
            BufferLimits(
                limits.max_pending_updates,
                limits.max_pending_bytes,
                limits.max_pending_updates_per_origin or limits.max_pending_updates,
                limits.max_pending_bytes_per_origin or limits.max_pending_bytes,
                limits.max_pending_structs_per_origin,
            ),
            _one_holder,
            clock,
        )
        self._checkpoint = b""
        self._log: list[bytes] = []
        self._log_bytes = 0
        # (update, local, delete set, origin), filled by the doc observer
        self._committed: list[tuple[bytes, bool, IdSet, object]] = []
        self._commit_origin: object = None
        self._listeners: list[UpdateListener] = []
        self._registered = False
        # (client, clock, ids) of the deletions-log entry this replica wrote last: a run of
        # deleting commits extends it (see `_record_deletions`)
        self._log_entry: tuple[int, int, IdSet] | None = None
        self._txn_depth = 0
        self._notifying = 0  # > 0 while listeners run
        self._log_pinned = False  # True: keep the log (no checkpoint) so updates can be undone
        self._applying: tuple[bytes, dict[int, ClientStructs], object] | None = None
        self._root_kinds: dict[str, type] = {name: Map for name in BOOKKEEPING_MAPS}
        self._root_kinds.update({name: Array for name in BOOKKEEPING_ARRAYS})
        self._artifact_kinds: dict[str, str] = {}  # name -> kind, as used through this replica
        self._recorded_kinds: set[str] = set()  # names whose kind this replica has written
        self._kinds_to_record: set[str] = set()  # written when the current write completes
        self.rebuilds = 0
        """Counts rebuilds of the engine document (each costs time in proportion to the
        document): the hub charges them to whoever sent the update that caused one."""
        self.generation = 0
        """Counts commits (local and remote): equal generations mean an unchanged document, which
        lets `Document` keep its text between edits instead of reading it whole each time."""
        self._texts: dict[str, tuple[int, TextView]] = {}  # root -> (generation, its view then)
        self._items: ItemIndex | None = None  # built on first use, then kept up to date
        self._unindexed = False  # whether items from others were applied while it was None
        self.judge: Judge | None = None
        """Called with each untrusted update's items (placed), the state before it and its
        origin, once the semantic gate passed it and just before the engine applies it; raising
        a `CrdtdocError` refuses the update. The hub authorizes writes here."""
        self.on_refused: Callable[[object, CrdtdocError], None] | None = None
        """Told of a buffered update refused when it came out of the causal buffer (with the
        origin it was given), instead of raising that to whoever's update woke it."""
        self._subscription: Subscription | None = None  # the document's observer
        self._roots: dict[str, object] = {}  # name -> root type of `_doc`, fetched once
        self._doc = self._new_doc()

    # -- identity --------------------------------------------------------------------------

    @property
    def agent(self) -> str:
        return self._agent

    @property
    def client_id(self) -> int:
        return self._client_id

    def __repr__(self) -> str:
        return f"Replica(agent={self._agent!r}, client_id={self._client_id}, {self.version()!r})"

    # -- artifacts -------------------------------------------------------------------------

    def document(self, name: str) -> Document:
        """The shared text named `name` (a Yjs root Y.Text)."""
        from crdtdoc.artifacts.document import Document

        return Document(self, name)

    def map(self, name: str) -> SharedMap:
        """The shared map named `name` (a Yjs root Y.Map) holding JSON-like values."""
        from crdtdoc.artifacts.shared_map import SharedMap

        return SharedMap(self, name)

    def tasks(self, name: str) -> TaskList:
        """The task list named `name` (a Yjs root Y.Map; layout in docs/SCHEMA.md)."""
        from crdtdoc.artifacts.tasks import TaskList

        return TaskList(self, name)

    def spec(self, name: str) -> InterfaceSpec:
        """The interface spec named `name` (a Yjs root Y.Map; layout in docs/SCHEMA.md)."""
        from crdtdoc.artifacts.spec import InterfaceSpec

        return InterfaceSpec(self, name)

    def artifacts(self) -> dict[str, str]:
        """Every artifact the document knows of: name -> kind ("document", "tasks", ...).
        Registry entries that are damaged (not a known kind, not a usable name, unreadable) are
        left out (`crdtdoc.safe_read`)."""
        from crdtdoc.safe_read import artifact_kinds

        self._sync_point()
        kinds = artifact_kinds(self._doc.get(ARTIFACTS_ROOT, type=Map))
        for name, kind in self._artifact_kinds.items():  # opened here: known once it holds
            if name not in kinds and self._holds_content(name):  # something (a Yjs editor's)
                kinds[name] = kind
        return kinds

    def require(self, name: str, kind: str) -> None:
        """Raises `NotFound` unless the room has an artifact `name` of `kind` ("document",
        "tasks", "spec", "map") that holds something, naming the ones it has: for readers, so
        a mistyped name is not taken for an empty artifact. `WrongKind` if it is another kind."""
        if self.artifacts().get(name) == kind:
            return
        openers = {"document": self.document, "tasks": self.tasks, "spec": self.spec}
        openers.get(kind, self.map)(name)  # raises WrongKind for a root of another kind
        kinds = self.artifacts()
        if kinds.get(name) != kind:
            label = KIND_LABELS.get(kind, kind)
            known = ", ".join(sorted(n for n, k in kinds.items() if k == kind)) or "none"
            raise NotFound(f"this room has no {label} named {name!r} (its {label}s: {known})")

    def _holds_content(self, name: str) -> bool:
        """Whether the root of an artifact opened here holds anything (a name only opened, or
        mistyped in a write that failed, is no artifact)."""
        kind = self._root_kinds.get(name)
        if kind is None:
            return False
        try:
            return len(self._doc.get(name, type=kind)) > 0
        except Exception:  # a root the engine cannot read as that type: it holds something
            return True

    def _declare(self, name: str, artifact: str, kind: type[_T]) -> None:
        """Checks that `name` can be used as an artifact of this kind (locally and by what the
        document records), and declares its root type."""
        _check_name(name)
        recorded = self._doc.get(ARTIFACTS_ROOT, type=Map).get(name)
        known = self._artifact_kinds.get(name, recorded if isinstance(recorded, str) else None)
        if known is not None and known != artifact:
            raise WrongKind(
                f"artifact {name!r} is a {KIND_LABELS.get(known, known)}; it cannot also be "
                f"used as a {KIND_LABELS.get(artifact, artifact)}"
            )
        self._sync_point()
        # Unrecorded: written by non-crdtdoc clients, worth an index. Recorded: checked against
        # an index that exists (a Document checks its content again as it reads).
        if (known is None or self._items is not None) and name in list(self._doc.keys()):
            self._check_use(name, kind, artifact, self._item_index())
        self._root(name, kind)
        self._artifact_kinds[name] = artifact

    def _check_use(self, name: str, kind: type[_T], artifact: str, items: ItemIndex) -> None:
        """Raises `WrongKind` when other clients use root `name` as another Yjs type (a
        ProseMirror Y.XmlFragment opened as a document). Checked when an artifact opens and
        before each write, since such content may arrive after the artifact opened empty."""
        uses = items.uses(name)
        if not uses or _OWN_USE[kind] in uses:
            return
        foreign = uses - _FITS[kind]
        if not foreign:
            # Nested types alone: a Y.Array of Y.Maps, or a text whose characters were all
            # deleted beside an embedded type (the index no longer sees them): a text only if
            # the document records it as this artifact.
            if safe_entry(self._doc.get(ARTIFACTS_ROOT, type=Map), name) == artifact:
                return
            foreign = uses
        used = ", ".join(_USE_NAMES[use] for use in sorted(foreign))
        raise WrongKind(
            f"root {name!r} is used by other clients as {used}; crdtdoc opens it only "
            f"as a Y.{kind.__name__} ({artifact}) and never writes into a root of "
            "another kind: give this artifact another name"
        )

    def _check_root(self, name: str, build: bool = False) -> None:
        """Raises `WrongKind` if an opened artifact's root has since been used by others as
        another Yjs type, as far as the item index knows; `build`: build the index if items
        from others arrived without it (costly once, then every local commit pays a parse:
        before a write, or when a text's content suggests it)."""
        if self._items is not None or (build and self._unindexed):
            try:
                items = self._item_index()
            except CrdtdocError:  # content our parser refuses, applied trusted: unknown
                self._unindexed = False  # not tried again until more arrives
                return
            self._check_use(name, self._root_kinds[name], self._artifact_kinds[name], items)

    def _record_kind(self, name: str) -> None:
        """Inside a write, before it changes anything: checks that the root is still of the
        artifact's kind, and has that kind recorded in the document (once per replica) when
        the write completes: a write that fails (a mistyped name, text not found) leaves no
        artifact behind."""
        self._check_root(name, build=True)
        if name not in self._recorded_kinds:
            self._kinds_to_record.add(name)

    def _write_kinds(self) -> None:
        """Records the kinds of the artifacts the completing write changed (see above)."""
        registry = self._doc.get(ARTIFACTS_ROOT, type=Map)
        for name in sorted(self._kinds_to_record):
            if registry.get(name) != self._artifact_kinds[name]:
                registry[name] = self._artifact_kinds[name]
            self._recorded_kinds.add(name)
        self._kinds_to_record.clear()

    def _root(self, name: str, kind: type[_T]) -> _T:
        """The root type `name` of the current document (refetched: a rebuild replaces the doc)."""
        _check_name(name)
        self._sync_point()
        declared = self._root_kinds.setdefault(name, kind)
        if declared is not kind:
            # pycrdt would silently hand out a second view of another type on the same root.
            raise UsageError(
                f"artifact {name!r} is a {declared.__name__}; it cannot also be used as a "
                f"{kind.__name__}"
            )
        return self._engine_root(name, kind)

    def _engine_root(self, name: str, kind: type[_T]) -> _T:
        """The root type `name` of the current document, fetched once per document: pycrdt's
        `get` costs a transaction of its own (no checks, no sync point: see `_root`)."""
        root = self._roots.get(name)
        if root is None:
            root = self._roots[name] = self._doc.get(name, type=kind)
        return cast(_T, root)

    # -- local changes ---------------------------------------------------------------------

    @contextmanager
    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
    ) -> Iterator[None]:
        """Groups local changes into one update; nested calls join the outer transaction.

        A guarded write (optimistic concurrency): with `expect` (a version or token the agent
        read at), raises `StaleRead`, listing what changed and by whom, before anything is
        written, if another replica changed any artifact in `on` (artifacts or names; all
        artifacts when empty) since then. `note` says what the block does; it appears in the
        change feed of everyone.

        As in Yjs there is no rollback: if the block raises, what it changed before raising is
        committed (and announced); the exception then propagates.
        """
        self._sync_point()
        if expect is not None:
            self._check_fresh(expect, on)
        if note is not None and (not isinstance(note, str) or not note):
            raise UsageError("a transaction note is a non-empty str")
        if self._txn_depth:
            self._txn_depth += 1
            try:
                yield
            finally:
                self._txn_depth -= 1
            return
        self._txn_depth = 1
        start = len(self._committed)
        log_length = len(self._log)
        try:
            with self._doc.transaction():
                if not self._registered:
                    agents = self._doc.get(AGENTS_ROOT, type=Map)
                    key = str(self._client_id)
                    # A client id reused across processes (the command line) is registered
                    # already: writing it again would delete the old entry, a range in every
                    # version token from then on.
                    if safe_entry(agents, key) != self._agent:
                        agents[key] = self._agent
                    self._registered = True
                if note is not None:
                    names = sorted(artifact_names(on))
                    self._doc.get(NOTES_ROOT, type=Array).append(
                        {"by": self._agent, "note": note, "at": time.time(), "artifacts": names}
                    )
                yield
                if self._kinds_to_record:
                    self._write_kinds()
        except BaseException as exc:
            self._kinds_to_record.clear()
            if _is_panic(exc):
                del self._log[log_length:]
                self._rebuild()
                raise ReplicaRebuilt(
                    "the CRDT engine failed during a local change; the replica was rebuilt "
                    "from its last good state and the change was not applied"
                ) from None
            self._txn_depth = 0
            self._after_local_commit(start)
            raise
        finally:
            self._txn_depth = 0
        self._after_local_commit(start)

    def _check_fresh(self, expect: Version | str, on: Iterable[object]) -> None:
        """Raises `StaleRead` if others changed the artifacts `on` since `expect`."""
        since = Version.from_token(expect) if isinstance(expect, str) else expect
        if not isinstance(since, Version):
            raise UsageError("expect= takes a Version or a version token")
        stale = self.changes_by_others(since, artifact_names(on), self._client_id)
        if stale:
            listing = "; ".join(c.describe() for c in stale[:10])
            more = f" and {len(stale) - 10} more" if len(stale) > 10 else ""
            raise StaleRead(
                f"{len(stale)} change(s) since the version you read: {listing}{more}. Nothing "
                "was written; read again and redo the change.",
                stale,
            )

    def changes_by_others(
        self, since: Version, names: Iterable[str], client_id: int
    ) -> list[Change]:
        """Changes since `since` to the artifacts `names` (all when empty) made by any client
        but `client_id`: what makes a guarded write stale, here and at the hub."""
        if since.compare(self.version()) in ("equal", "after"):
            return []  # nothing arrived since (the common case: no feed to compute)
        wanted = set(names)
        if wanted and not self._others_touched(since, wanted, client_id):
            return []  # others changed only other artifacts: no feed to compute either
        return [
            c
            for c in self._changes(since)
            if c.client_id != client_id and (not wanted or c.artifact in wanted)
        ]

    def item_index(self) -> ItemIndex:
        """Where every item lives and what it holds (built on first use, then kept up to date)."""
        self._sync_point()
        return self._item_index()

    def _item_index(self) -> ItemIndex:
        if self._items is None:
            index = ItemIndex()
            index.add(parse_update(self._doc.get_update(), details=True).items or [])
            self._items = index
            self._unindexed = False
        return self._items

    def _others_touched(self, since: Version, names: set[str], client_id: int) -> bool:
        """Whether ids added or deleted since `since` (added by clients other than `client_id`)
        may belong to the artifacts `names`: a cheap, conservative test (ids whose artifact is
        unknown count as touching)."""
        index = self.item_index()
        now = self.version()
        touched: set[str | None] = set()
        for client, end in now.clocks.items():
            start = since.clocks.get(client, 0)
            if client != client_id and end > start:
                touched |= index.roots_of_range(client, start, end)
        for client, start, end in now.deleted.difference(since.deleted):
            touched |= index.roots_of_range(client, start, end)  # whoever deleted them
        return None in touched or bool(touched & names)

    def _after_local_commit(self, start: int) -> None:
        self._record_deletions(start)
        if self._buffer:  # nothing remote should wait on our own ids, but never strand it
            self._wake([self._client_id])
        self._notify()

    def _record_deletions(self, start: int) -> None:
        """Appends this client's deletions to the deletions log, so others can attribute them.

        A run of commits that only delete (backspacing, clearing a list) keeps one entry: each
        replaces the run's entry, written just before, with one holding the run's deletions so
        far. The replaced entries sit at consecutive ids, so the engine keeps them as one
        deleted struct and the delete set as one range: a run costs two structs, not one entry
        per commit (on the editing trace, 77,463 deleting commits in 3,872 runs)."""
        deleted = IdSet()
        for _, local, ds, _ in self._committed[start:]:
            if local:
                deleted = deleted.union(ds)
        if not deleted:
            return
        client = self._client_id
        run = self._log_entry if self._runs_extend() else None
        replaces = None
        if run is not None and run[0] == client and self._state.get(client, 0) == run[1] + 1:
            merged = run[2].union(deleted)
            if merged.range_count() <= _MAX_RUN_RANGES:
                replaces, deleted = run[1], merged
        self._txn_depth = 1
        try:
            with self._doc.transaction():
                if replaces is not None:  # by id: the entry need not be the log's last
                    self._doc.apply_update(_deletion_of(client, replaces))
                self._engine_root(DELETIONS_ROOT, Array).append(deleted.encode())
        finally:
            self._txn_depth = 0
        self._log_entry = (client, self._state[client] - 1, deleted)

    def _runs_extend(self) -> bool:
        """Whether a deleting commit may replace the run's log entry (see `_record_deletions`);
        a connected replica says no while its writes are held for a guarded commit, which the
        hub judges whole, before it has the entry being replaced."""
        return True

    # -- remote changes --------------------------------------------------------------------

    def apply_update(
        self,
        data: bytes,
        *,
        parsed: ParsedUpdate | None = None,
        origin: object = None,
        trusted: bool = False,
    ) -> IdSet:
        """Validates and applies a Yjs v1 update from elsewhere; returns the ids its data waits
        for (empty: all of it applied).

        `origin` is any tag of the caller's; listeners read it back as `commit_origin` when
        this update's data commits (at once, or later from the causal buffer).

        Data whose dependencies are missing waits in the causal buffer (see `pending()`) and is
        applied as soon as they arrive. Raises `InvalidUpdate`, leaving the replica unchanged, when
        the bytes are not a valid update, or when they would mean something else to another Yjs
        engine (`crdtdoc.semantics`, judged once the update's dependencies are present);
        `PendingLimitExceeded` when the buffer is full. `trusted` skips the semantic judgement
        for data this replica's owner accepted before (a hub reloading its own log), so data
        stored under older rules still loads.
        """
        if self._txn_depth:
            raise UsageError("apply_update cannot run inside a local transaction; call it after")
        if parsed is None and self.holds(data):
            return IdSet()
        if parsed is None:  # a caller that already parsed these very bytes may pass the result
            parsed = parse_update(data, details=not trusted)  # the gate reads the items
        try:
            return self._apply_parsed(bytes(data), parsed, origin, trusted)
        finally:
            self._notify()  # whatever committed is announced, even if a later part failed

    def holds(self, data: bytes | memoryview) -> bool:
        """Whether `data` is an update that brings this replica nothing: no structs, and
        exactly the deletions it has applied, as Yjs or pycrdt encode them. That is what a peer
        holding everything sends as its sync step 2; comparing bytes, without parsing the
        delete set, keeps every reconnect cheap however long the document's history. False
        does not mean news: parsing tells (ranges written another way, fewer of them)."""
        if len(data) < 2 or data[0] != 0:  # structs from at least one client
            return False
        cached = self._nothing_new
        if cached is None or cached[0] != self._deletions_changed:
            # Encoding the delete set costs what it holds: only for updates of a size that
            # could be it (a range takes 2 to 10 bytes, a client's heading up to 13), so the
            # small deletion-only updates of everyday edits never pay for a large room's.
            deleted = self._deleted
            ranges, clients = deleted.range_count(), len(deleted.clients())
            if not 2 * ranges + 2 <= len(data) <= 2 + 13 * clients + 10 * ranges:
                return False
            cached = (self._deletions_changed, b"\x00" + deleted.encode(), None)
            self._nothing_new = cached
        count, as_yjs, as_pycrdt = cached
        if len(data) != len(as_yjs):  # the same ranges in another order: the same length
            return False
        if data == as_yjs:  # clients in descending order, as Yjs writes them
            return True
        if as_pycrdt is None:  # pycrdt's order (its own hash map's): asked once per change
            as_pycrdt = self._doc.get_update(encode_state_vector(self._state))
            self._nothing_new = (count, as_yjs, as_pycrdt)
        return data == as_pycrdt

    def _apply_parsed(
        self, data: bytes, parsed: ParsedUpdate, origin: object, trusted: bool
    ) -> IdSet:
        state = self._state
        fresh_structs = parsed.new_ids(state)
        # Only deletions this replica has not applied matter; an up-to-date peer's step 2 (no
        # new structs, the whole delete set) stops here after one pass over its ranges.
        deletes = parsed.delete_set.difference(self._deleted) if parsed.delete_set else IdSet()
        if not trusted and parsed.size - parsed.ds_offset > 1:  # a delete set, maybe of
            # empty ranges only: judged as written, before any of the update applies
            self._judge_deletions(written_deletions(data, parsed), data, parsed)
        if not fresh_structs and not deletes:
            return deletes
        waits = parsed.missing(state) if fresh_structs else IdSet()
        if waits:
            self._hold(data, parsed, origin, trusted, waits)
        else:
            if not deletes or deletes.clip_to(_after(state, parsed)) == deletes:
                # the common case: all in one go
                self._apply_to_doc(data, parsed if fresh_structs else None, origin, trusted)
                deletes = IdSet()
            elif fresh_structs:
                self._apply_to_doc(structs_only(data, parsed), parsed, origin, trusted)
            if fresh_structs and self._buffer:
                self._wake(list(parsed.structs))
        if deletes:
            waits = waits.union(self._apply_deletes(deletes, origin, trusted))
        return waits

    def _judge_deletions(
        self, ranges: Iterable[tuple[int, int, int]], data: bytes, parsed: ParsedUpdate | None
    ) -> None:
        """Refuses deleted ranges that split a surrogate pair of the document or of the
        update's own strings (`data`, `parsed`: the update, when it carries structs)."""
        items = None
        if parsed is not None and parsed.structs:
            items = parsed.items
            if items is None:
                items = parse_update(data, details=True).items
        check_deletions(self._item_index(), ranges, items, self._state, self._deleted)

    def _hold(
        self, data: bytes, parsed: ParsedUpdate, origin: object, trusted: bool, missing: IdSet
    ) -> None:
        """Puts an update's structs in the causal buffer (its deletions wait in entries of
        their own: they wait for other ids, and must not be lost if the structs expire)."""
        part = structs_only(data, parsed) if parsed.delete_set else data
        if parsed.items is not None:
            parsed = parsed.without_items()  # parsed again when it leaves the buffer
        self._buffer.hold(part, parsed, IdSet(), origin, trusted, missing)

    def _apply_deletes(self, deletes: IdSet, origin: object, trusted: bool) -> IdSet:
        """Applies the deletions whose ids are present; holds the rest (returned)."""
        rest = self._delete_present(deletes)
        if rest:
            self._buffer.hold(b"", None, rest, origin, trusted, self._beyond(rest))
        return rest

    def _delete_present(self, deletes: IdSet) -> IdSet:
        """Applies the deletions of ids this replica has; returns those of ids it lacks."""
        ready = deletes.clip_to(self._state)
        fresh = ready.difference(self._deleted)
        if fresh:
            self._apply_to_doc(deletes_only(fresh), None, None, True)  # no origin claimed
        return deletes.difference(ready)

    def _beyond(self, deletes: IdSet) -> IdSet:
        """The ids of `deletes` this replica does not have yet."""
        missing = IdSet()
        for client, start, end in deletes:
            have = self._state.get(client, 0)
            if end > have:
                missing.add(client, max(start, have), end)
        return missing

    def _wake(self, clients: list[int]) -> None:
        """Applies every waiting entry that the clocks of `clients` advancing made ready."""
        work = list(clients)
        failure: CrdtdocError | None = None
        buffer = self._buffer
        while work:
            client = work.pop()
            for entry in buffer.due(client, self._state.get(client, 0)):
                if entry.parsed is None:
                    refused = self._wake_deletes(entry)
                    failure = failure or refused
                    continue
                parsed = entry.parsed
                if not parsed.new_ids(self._state):  # everything in it arrived some other way
                    buffer.remove(entry)
                    continue
                missing = parsed.missing(self._state)
                if missing:
                    buffer.file(entry, missing)
                    continue
                buffer.remove(entry)
                try:
                    self._apply_to_doc(entry.data, parsed, entry.origin, entry.trusted)
                except CrdtdocError as exc:  # refused: drop it, finish the drain
                    if self.on_refused is not None:
                        self.on_refused(entry.origin, exc)
                    else:
                        failure = failure or exc
                    continue
                work.extend(parsed.structs)
        if failure is not None:
            raise failure

    def _wake_deletes(self, entry: Waiting) -> CrdtdocError | None:
        """Applies what a held deletion entry can now delete (once judged, unless trusted);
        files the rest again. A refused entry is dropped: its refusal goes to `on_refused`, or
        is returned when nobody listens."""
        if not entry.trusted:
            try:
                self._judge_deletions(entry.deletes.clip_to(self._state), b"", None)
            except InvalidUpdate as exc:
                self._buffer.remove(entry)
                if self.on_refused is None:
                    return exc
                self.on_refused(entry.origin, exc)
                return None
        rest = self._delete_present(entry.deletes)
        if rest:
            entry.deletes = rest
            self._buffer.file(entry, self._beyond(rest))
        else:
            self._buffer.remove(entry)
        return None

    def _apply_to_doc(
        self, data: bytes, parsed: ParsedUpdate | None, origin: object, trusted: bool
    ) -> None:
        """Hands pycrdt one update whose dependencies are all present, once the semantic gate
        passed it (unless `trusted`). `parsed` describes the structs it carries (None: it only
        deletes); the observer uses it to advance the state vector."""
        structs: dict[int, ClientStructs] = {}
        items: list[Item] | None = None
        if parsed is not None:
            structs = parsed.structs
            if not trusted or self._items is not None:
                items = parsed.items
                if items is None:
                    items = parse_update(data, details=True).items or []
        before = {client: self._state.get(client, 0) for client in structs}
        locator: Locator | None = None
        if items is not None and not trusted:
            locator = check_update(self._item_index(), items, before, self._deleted)
            if self.judge is not None:
                self.judge(items, locator, before, origin)
        log_length = len(self._log)
        self._applying = (data, structs, origin)
        try:
            self._doc.apply_update(data)
        except BaseException as exc:
            self._applying = None
            if not (_is_panic(exc) or isinstance(exc, Exception)):
                raise
            del self._log[log_length:]
            self._rebuild()
            if _is_panic(exc):
                raise ReplicaRebuilt(
                    "the CRDT engine panicked applying a validated update; the replica discarded "
                    "the damaged document, rebuilt it from its last good state and did not apply "
                    f"the update ({exc})"
                ) from None
            raise InvalidUpdate(f"the CRDT engine refused the update: {exc}") from None
        self._applying = None
        if items is not None and self._items is not None:
            self._items.add(items, before, locator)
        elif parsed is not None and self._items is None:
            self._unindexed = True

    def pending(self) -> Pending:
        """What waits in the causal buffer, and which ids it waits for (a walk over the whole
        buffer: for reports, not for every update)."""
        missing = IdSet()
        waiting = self._buffer.structs()
        for entry in waiting:
            assert entry.parsed is not None
            missing = missing.union(entry.parsed.missing(self._state))
        deletions = self._buffer.deletions()
        missing = missing.union(self._beyond(deletions))
        size = sum(len(entry.data) for entry in waiting)
        return Pending(len(waiting), size, deletions, missing)

    @property
    def pending_holder(self) -> Callable[[object], Hashable]:
        """Who a waiting update is charged to, from the origin given to `apply_update` (by
        default one holder for all). The hub charges each sender's identity, so one sender's
        backlog cannot use up what others' need."""
        return self._buffer.holder_of

    @pending_holder.setter
    def pending_holder(self, holder_of: Callable[[object], Hashable]) -> None:
        self._buffer.holder_of = holder_of

    @property
    def pending_count(self) -> int:
        """Entries (updates, held deletions) waiting in the causal buffer; cheap."""
        return len(self._buffer)

    def pending_of(self, holder: Hashable) -> tuple[int, int]:
        """(updates, memory charged) waiting for one holder; cheap."""
        return self._buffer.share(holder)

    def share_pending(self, shares: Shares) -> None:
        """Counts what waits here in `shares`, a dict shared with other replicas (a hub's
        rooms), so a sender's share of waiting data is bounded over all of them. Call it
        before anything waits."""
        if self._buffer:
            raise UsageError("share_pending must be called before anything waits")
        self._buffer.shares = shares

    def drop_pending(self, keep: Callable[[object], bool]) -> int:
        """Drops waiting data whose origin `keep` rejects (a sender that left: it resends what
        the hub lacks when it syncs again); returns how many entries went."""
        return len(self._buffer.drop(lambda entry: keep(entry.origin)))

    def expire_pending(self, max_age: float) -> list[object]:
        """Drops untrusted data that has waited in the causal buffer longer than `max_age`
        seconds (a dependency that never arrives must not be held for ever) and returns the
        origins it came from, so their senders can be asked to sync again."""
        return [entry.origin for entry in self._buffer.expire(max_age)]

    def pending_entries(self) -> list[bytes]:
        """What waits in the causal buffer, as updates (for saving a replica)."""
        saved = [entry.data for entry in self._buffer.structs()]
        deletions = self._buffer.deletions()
        if deletions:
            saved.append(deletes_only(deletions))
        return saved

    # -- reading state ---------------------------------------------------------------------

    def version(self) -> Version:
        """What this replica has applied: state vector plus delete set (buffered data excluded)."""
        self._sync_point()
        return self._current_version()

    def applied(self) -> tuple[Mapping[int, int], IdSet]:
        """The live state vector and delete set, without the copies `version()` makes: for
        read-only checks on a hot path (the hub's gate); valid until the next change."""
        return self._state, self._deleted

    def is_news(self, parsed: ParsedUpdate) -> bool:
        """Whether a parsed update carries anything this replica has not applied."""
        if parsed.new_ids(self._state):
            return True
        return bool(parsed.delete_set) and not parsed.delete_set.issubset(self._deleted)

    def _current_version(self) -> Version:
        return Version(self._state, self._deleted.copy())

    def state_vector(self) -> bytes:
        """The Yjs-encoded state vector (what sync step 1 carries)."""
        return encode_state_vector(self._state)

    def encode_update(self, since: Version | bytes | None = None) -> bytes:
        """A Yjs v1 update with everything this replica has that `since` lacks.

        `since` is a `Version`, an encoded state vector, or None for everything. Deletions are
        always included in full, as in Yjs.
        """
        self._sync_point()
        if since is None:
            return self._doc.get_update()
        if isinstance(since, Version):
            state = encode_state_vector(since.clocks)
        else:
            decode_state_vector(since)  # validates; raises InvalidUpdate
            state = bytes(since)
        return self._doc.get_update(state)

    def encode_snapshot(self) -> bytes:
        """Everything applied, plus the deletions still waiting for the ids they delete: what a
        store may keep in place of the updates that brought them (a snapshot without the
        waiting deletions would lose them when their ids arrive later). Waiting structs are not
        included: a store must not fold away updates whose structs still wait."""
        self._sync_point()
        full = self._doc.get_update()
        waiting = self._buffer.deletions()
        if not waiting:
            return full
        parsed = parse_update(full)
        return full[: parsed.ds_offset] + parsed.delete_set.union(waiting).encode()

    def changes_since(self, since: Version | str | None = None) -> list[Change]:
        """What changed since `since` (a Version or token), by artifact and agent."""
        self._sync_point()
        if isinstance(since, str):
            since = Version.from_token(since)
        return self._changes(since or Version())

    def _changes(self, since: Version) -> list[Change]:
        from crdtdoc.changes import changes_between
        from crdtdoc.feed import in_artifact_terms

        texts = frozenset(n for n, kind in self._root_kinds.items() if kind is Text)
        raw = changes_between(self._doc.get_update(), since, self._deleted, texts)
        return in_artifact_terms(raw, self)

    def agents(self) -> dict[int, str]:
        """client id -> agent name, for every client that registered in this document. Registry
        entries that are damaged (a key that is no client id, a name that is not a non-empty
        str, unreadable) are left out (`crdtdoc.safe_read`)."""
        from crdtdoc.safe_read import agent_names

        return agent_names(self._doc.get(AGENTS_ROOT, type=Map))

    def _sync_point(self) -> None:
        """Called as a public method starts using the document; a subclass that receives data
        on another thread applies it here, in the owning thread (see `BlockingReplica`)."""

    # -- change notifications --------------------------------------------------------------

    @property
    def commit_origin(self) -> object:
        """While an `on_update` listener runs: the `origin` passed to `apply_update` for the
        update being announced. None for local edits, and for deletions released from the
        causal buffer (those may combine several updates, so no single origin is claimed)."""
        return self._commit_origin

    def on_update(self, listener: UpdateListener) -> Callable[[], None]:
        """Calls `listener(update, local)` after each committed change; returns an unsubscribe.
        `update` holds what the engine integrated: the bytes received, unless they re-sent ids
        this replica held (then the engine's own encoding of the change)."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self) -> None:
        """Runs after each commit, outside pycrdt: checkpoints, then tells the listeners."""
        if not self._log_pinned and self._log_bytes > max(
            self._limits.checkpoint_log_bytes, len(self._checkpoint)
        ):
            self._take_checkpoint()
        committed, self._committed = self._committed, []
        self._notifying += 1
        try:
            for update, local, _, origin in committed:
                self._commit_origin = origin
                for listener in list(self._listeners):
                    listener(update, local)
        finally:
            self._commit_origin = None
            self._notifying -= 1

    def observe(self, callback: Callable[[list[Change]], None]) -> Callable[[], None]:
        """Calls `callback(changes)` after each commit, local or remote, with what changed in
        artifact terms (as `changes_since` reports it). Returns a function that unsubscribes.

        Each call reads the whole document to describe the change, so observers cost time in
        proportion to the document's size."""
        seen = [self._current_version()]

        def listener(update: bytes, local: bool) -> None:
            now = self._current_version()
            if now == seen[0]:
                return  # several updates of one commit: reported together already
            changes, seen[0] = self._changes(seen[0]), now
            if changes:
                callback(changes)

        return self.on_update(listener)

    # -- the pycrdt document ---------------------------------------------------------------

    def _new_doc(self) -> Doc[Any]:
        return self._observed(Doc(client_id=self._client_id))

    def release(self) -> None:
        """Drops the engine's subscription to this replica's document, for an owner that lets
        the replica go (the hub unloading a room): that subscription is a cycle through the
        engine's own objects, which Python's garbage collector cannot break, so without this
        the replica and everything it holds would never be freed. The replica stops tracking
        changes after it: do not use it again."""
        if self._subscription is not None:
            self._doc.unobserve(self._subscription)
            self._subscription = None

    def _observed(self, doc: Doc[Any]) -> Doc[Any]:
        """`doc`, observed in place of the current document, whose subscription is dropped:
        a subscription keeps its document alive, so a replaced one would never be freed."""
        self.release()
        self._roots = {}  # the old document's
        self._subscription = doc.observe(self._on_transaction)
        return doc

    def _on_transaction(self, event: TransactionEvent) -> None:
        """Tracks state vector, delete set and log after each commit (inside pycrdt: no edits)."""
        remote = self._applying
        origin = None
        if remote is None:  # a local transaction: ask pycrdt what it did
            update: bytes = event.update
            if update == _EMPTY_UPDATE:
                return
            after_state: bytes = getattr(event, "after_state")  # noqa: B009 - not in the stubs
            self._state = decode_state_vector(after_state)
        else:
            # A remote update is applied only once all it depends on is present, so the state
            # after it is known without asking pycrdt (which would re-encode it).
            update, structs, origin = remote
            state = self._state
            resent = False
            for client, s in structs.items():
                have = state.get(client, 0)
                resent = resent or s.start < have
                if s.end > have:
                    state[client] = s.end
            if resent:
                # It re-sent ids this replica held, which the engine skipped, whatever they
                # say: what is announced and logged is what the engine integrated, so that a
                # merge of announced updates (a hub coalescing them) reads as the replica does.
                update = event.update
        self.generation += 1
        if remote is None and self._items is not None:  # remote items: see `_apply_to_doc`
            try:
                self._items.add(parse_update(update, details=True).items or [])
            except CrdtdocError:
                self._items = None  # rebuilt from the document when next needed
                self._unindexed = True
        # The transaction's own delete set: it includes deletions made while integrating (the
        # loser of two concurrent writes to one map key), which the update's bytes do not list.
        delete_set: bytes = getattr(event, "delete_set")  # noqa: B009
        ds = IdSet()
        if delete_set != _EMPTY_DELETE_SET:
            ds = IdSet.decode_from(
                Decoder(delete_set, InvalidUpdate), max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID
            )
            for client, start, end in ds:
                self._deleted.add(client, start, end)
            self._deletions_changed += 1
        self._committed.append((update, remote is None, ds, origin))
        self._log.append(update)
        self._log_bytes += len(update)

    def _undo(self, updates: list[bytes]) -> None:
        """Removes these committed updates (still in the log, after the last checkpoint) and
        rebuilds the document without them. Used to roll back writes the hub refused; nothing
        else in the log may depend on them. The replica continues under a fresh client id, so
        the ids those writes used are never used again (a hub that did apply them, unknown to
        us, would otherwise see two different edits under one id)."""
        doomed = {id(u) for u in updates}
        self._log = [u for u in self._log if id(u) not in doomed]
        self._client_id = new_client_id(avoid=set(self._state))
        self._rebuild()

    def _reset(self) -> None:
        """Drops everything (content, buffer, log) and continues empty under a fresh client id:
        how a replica whose writes were refused resyncs to exactly the hub's state."""
        self.generation += 1
        self._items = None
        self._unindexed = False
        self._client_id = new_client_id(avoid=set(self._state))
        self._state = {}
        self._deleted = IdSet()
        self._deletions_changed += 1
        self._buffer.clear()
        self._checkpoint = b""
        self._log = []
        self._log_bytes = 0
        self._committed = []
        self._registered = False
        self._recorded_kinds.clear()
        self._kinds_to_record.clear()
        self._doc = self._new_doc()

    def _take_checkpoint(self) -> None:
        self._checkpoint = self._doc.get_update()
        self._log = []
        self._log_bytes = 0

    def _rebuild(self) -> None:
        """Replaces the document with one rebuilt from the checkpoint and the committed log."""
        self.generation += 1
        self.rebuilds += 1
        self._items = None
        self._unindexed = True
        log = self._log
        doc: Doc[Any] = Doc(client_id=self._client_id)
        if self._checkpoint:
            doc.apply_update(self._checkpoint)
        for update in log:
            doc.apply_update(update)
        self._doc = self._observed(doc)
        self._state = decode_state_vector(doc.get_state())
        self._deleted = parse_update(doc.get_update()).delete_set
        self._deletions_changed += 1
        self._committed = []
        self._registered = str(self._client_id) in doc.get(AGENTS_ROOT, type=Map)
        self._take_checkpoint()

    # -- saving and loading ----------------------------------------------------------------

    def save(self, path: str) -> None:
        """Writes this replica (content, buffered data, agent) to `path`, atomically."""
        saved = SavedReplica(self.agent, self.client_id, self.encode_update())
        write_saved(replace(saved, pending=self.pending_entries()), path)

    @classmethod
    def load(cls, path: str, *, agent: str | None = None) -> Replica:
        """Restores a saved replica under a fresh client id, so no id is ever reused."""
        saved = read_saved(path)
        try:
            used = set(parse_update(saved.state).structs)
            if saved.client_id is not None:
                used.add(saved.client_id)
            fresh = cls(agent=agent or saved.agent, client_id=new_client_id(used))
            fresh.apply_update(saved.state)
            for part in saved.pending:
                fresh.apply_update(part)
        except CrdtdocError as exc:
            raise StorageError(f"{path} holds data that does not apply: {exc}") from None
        return fresh

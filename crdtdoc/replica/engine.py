"""`EngineDocument`: the replica's pycrdt document, observed after every commit (state vector,
delete set, log of committed updates, the item index), what it holds read back out (versions,
encoded updates, changes), announced to listeners, checkpointed, and rebuilt when the engine
fails (a pycrdt panic never escapes: the damaged document is dropped and rebuilt from the last
checkpoint plus the log of committed updates since)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pycrdt import Doc, Map, TransactionEvent

from crdtdoc.encoding import Decoder
from crdtdoc.errors import CrdtdocError, InvalidUpdate
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import ItemIndex
from crdtdoc.replica.state import ReplicaState, UpdateListener, new_client_id
from crdtdoc.roots import AGENTS_ROOT
from crdtdoc.updates import (
    MAX_CLIENT_ID,
    MAX_CLOCK,
    ParsedUpdate,
    advance,
    decode_state_vector,
    encode_state_vector,
    parse_update,
)
from crdtdoc.versions import Version

_EMPTY_UPDATE = b"\x00\x00"


_EMPTY_DELETE_SET = b"\x00"
_NO_DELETIONS = IdSet()  # a commit's deletions when it deleted nothing: shared, never changed


class EngineDocument(ReplicaState):
    """The engine document and its bookkeeping (see the module docstring)."""

    def _sync_point(self) -> None:
        """Called as a public method starts using the document; a subclass that receives data
        on another thread applies it here, in the owning thread (see `BlockingReplica`)."""

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

    def agents(self) -> dict[int, str]:
        """client id -> agent name, for every client that registered in this document. Registry
        entries that are damaged (a key that is no client id, a name that is not a non-empty
        str, unreadable) are left out (`crdtdoc.safe_read`)."""
        from crdtdoc.safe_read import agent_names

        return agent_names(self._doc.get(AGENTS_ROOT, type=Map))

    @property
    def commit_origin(self) -> object:
        """While an `on_update` listener runs: the `origin` passed to `apply_update` for the
        update being announced. None for local edits, and for deletions released from the
        causal buffer (those may combine several updates, so no single origin is claimed)."""
        return self._commit_origin

    @property
    def commit_fresh(self) -> Mapping[int, tuple[int, int]] | None:
        """While an `on_update` listener runs: the ids the remote update being announced added,
        by client, as clock ranges `(start, end)` (ids it re-sent are not in them: for the hub's
        record of who wrote what). None for local edits, whose structs are not parsed, and
        unless `record_fresh` was set (it costs every remote update a little)."""
        return self._commit_fresh

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
            for update, local, _, origin, fresh in committed:
                self._commit_origin, self._commit_fresh = origin, fresh
                for listener in list(self._listeners):
                    listener(update, local)
        finally:
            self._commit_origin = self._commit_fresh = None
            self._notifying -= 1

    def _engine_apply(self, data: bytes) -> None:
        """What pycrdt's `Doc.apply_update` does, without its Python transaction wrapper, which
        costs more than the engine's own work on a small update (about 1.2 of the 3 µs an
        agent-sized update takes in all). It calls pycrdt's native document (`Doc._doc`, pinned
        by the exact pycrdt version crdtdoc requires) the way that wrapper does: one transaction,
        committed even when the apply fails partway (the observer then sees what was done), and
        errors of the observer raised afterwards as pycrdt raises them (when the apply itself
        failed, its error is raised and theirs are dropped: the caller rebuilds the document).
        Only for code that runs outside any pycrdt transaction; `tests/replica/test_engine.py`
        holds it to the wrapper."""
        doc = self._doc
        native = doc._doc
        txn = native.create_transaction()
        try:
            try:
                native.apply_update(txn, data)
            finally:
                txn.commit()
        finally:
            txn.drop()
            failures = tuple(doc._exceptions)
            doc._exceptions.clear()
        if failures:
            raise ExceptionGroup("Observer callback error", failures)

    def _new_doc(self) -> Doc[Any]:
        return self._observed(self._engine_doc())

    def _engine_doc(self) -> Doc[Any]:
        """A fresh engine document; one that keeps history keeps deleted content (no garbage
        collection), which a past version needs to be read."""
        return Doc(client_id=self._client_id, skip_gc=self._history or None)

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
        fresh: dict[int, tuple[int, int]] | None = None
        if remote is None:  # a local transaction: ask pycrdt what it did
            update: bytes = event.update
            if update == _EMPTY_UPDATE:
                return
            after_state: bytes = getattr(event, "after_state")  # noqa: B009 - not in the stubs
            self._state = decode_state_vector(after_state)
            if self._items is not None:  # remote items: see `_apply_to_doc`
                try:
                    self._items.add(parse_update(update, details=True).items or [])
                except CrdtdocError:
                    self._items = None  # rebuilt from the document when next needed
                    self._unindexed = True
        else:
            # A remote update is applied only once all it depends on is present, so the state
            # after it is known without asking pycrdt (which would re-encode it). If it re-sent
            # ids this replica held, the engine skipped them, whatever they say: what is
            # announced and logged is what the engine integrated, so that a merge of announced
            # updates (a hub coalescing them) reads as the replica does.
            update, structs, origin = remote
            state = self._state
            if self.record_fresh:
                fresh = {
                    c: (max(s.start, have), s.end)
                    for c, s in structs.items()
                    if s.end > (have := state.get(c, 0))
                }
            if advance(state, structs):
                update = event.update
        self.generation += 1
        # The transaction's own delete set: it includes deletions made while integrating (the
        # loser of two concurrent writes to one map key), which the update's bytes do not list.
        delete_set: bytes = getattr(event, "delete_set")  # noqa: B009
        ds = _NO_DELETIONS
        if delete_set != _EMPTY_DELETE_SET:
            ds = IdSet.decode_from(
                Decoder(delete_set, InvalidUpdate), max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID
            )
            self._deleted.update(ds)
            self._deletions_changed += 1
        self._committed.append((update, remote is None, ds, origin, fresh))
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

    def forget_past(self, before: Version) -> bool:
        """Collects the content of what was deleted by `before` (a version this replica has
        seen), which a replica that keeps history holds: past versions up to it can no longer be
        read (`HistoryUnavailable`), those after it still can. Rebuilds the document (one
        whole-document load); returns whether anything was collected. For a hub's history
        horizon."""
        from crdtdoc.replica.snapshots import collected

        self._sync_point()
        full = self._doc.get_update()
        kept = collected(full, before.deleted)
        if kept == full:
            return False
        self._checkpoint, self._log, self._log_bytes = kept, [], 0
        rebuilds = self.rebuilds  # counts the engine's refusals: this is none
        self._rebuild()
        self.rebuilds = rebuilds
        return True

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
        doc = self._engine_doc()
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

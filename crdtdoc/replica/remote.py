"""`RemoteUpdates`: applying updates from elsewhere. Every update is parsed and validated
(`crdtdoc.updates`, the semantic gate `crdtdoc.semantics`, the owner's `judge`) before pycrdt sees
it; an update whose dependencies are missing waits in the causal buffer (`crdtdoc.causal`) and is
applied, in dependency order, once what it needs has arrived, because pycrdt does not converge
when fed out of order."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from crdtdoc.causal import Shares, Waiting
from crdtdoc.errors import CrdtdocError, InvalidUpdate, ReplicaRebuilt, UsageError
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import Locator
from crdtdoc.replica.artifact_roots import ArtifactRoots
from crdtdoc.replica.state import Pending
from crdtdoc.semantics import check_deletions, check_update, written_deletions
from crdtdoc.updates import (
    ClientStructs,
    Item,
    ParsedUpdate,
    deletes_only,
    encode_state_vector,
    parse_update,
    structs_only,
)

_NO_STRUCTS: dict[int, ClientStructs] = {}  # an update that only deletes: never changed
_NO_CLOCKS: dict[int, int] = {}


def _after(state: dict[int, int], parsed: ParsedUpdate) -> dict[int, int]:
    """The state vector once `parsed`'s structs are applied."""
    after = dict(state)
    for client, s in parsed.structs.items():
        after[client] = max(after.get(client, 0), s.end)
    return after


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


class RemoteUpdates(ArtifactRoots):
    """Validating, buffering and applying updates from elsewhere (see the module docstring)."""

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
        structs: dict[int, ClientStructs] = _NO_STRUCTS
        items: list[Item] | None = None
        before = _NO_CLOCKS
        if parsed is not None:
            structs = parsed.structs
            before = parsed.clocks_before(self._state)
            if not trusted or self._items is not None:
                items = parsed.items
                if items is None:
                    items = parse_update(data, details=True).items or []
        locator: Locator | None = None
        if items is not None and not trusted:
            locator = check_update(self._item_index(), items, before, self._deleted)
            if self.judge is not None:
                self.judge(items, locator, before, origin)
        log_length, announced = len(self._log), len(self._committed)
        self._applying = (data, structs, origin)
        try:
            self._engine_apply(data)
        except BaseException as exc:
            self._applying = None
            if not (_is_panic(exc) or isinstance(exc, Exception)):
                raise
            del self._log[log_length:]
            # Commits made earlier in this call are in the rebuilt document: still announced.
            kept = self._committed[:announced]
            self._rebuild()
            self._committed = kept
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

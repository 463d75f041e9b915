"""What a replica holds, declared and initialised in one place (`ReplicaState`), and the small
values around it: its limits, what waits in its causal buffer, fresh client ids.

The `Replica` class is built in layers, each in its own module and each calling only the layers
below it: this state; the engine document (`engine`); the artifacts' roots (`artifact_roots`);
updates from elsewhere (`remote`); the room's past (`history_reads`); local writes and the
public face (`replica`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Subscription

from crdtdoc.causal import BufferLimits, CausalBuffer
from crdtdoc.errors import CrdtdocError
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import ItemIndex, Locator
from crdtdoc.roots import BOOKKEEPING_ARRAYS, BOOKKEEPING_MAPS
from crdtdoc.updates import ClientStructs, Item

UpdateListener = Callable[[bytes, bool], None]
"""Called with (update bytes, made locally) after each committed change."""

Judge = Callable[[list[Item], Locator, dict[int, int], object], None]
"""The hub's authorization hook (`ReplicaState.judge`)."""


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


def new_client_id(avoid: set[int] | frozenset[int] = frozenset()) -> int:
    """A random 32-bit Yjs client id not in `avoid` (ids Yjs clients pick are 32-bit too)."""
    while True:
        cid = secrets.randbits(32)
        if cid and cid not in avoid:
            return cid


def _one_holder(origin: object) -> Hashable:
    return None


class ReplicaState:
    """Every field of a replica, set to what an empty replica holds (its engine document is
    made by the layer that owns it: `EngineDocument`)."""

    _doc: Doc[Any]

    def __init__(
        self,
        agent: str,
        client_id: int,
        limits: ReplicaLimits | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agent = agent
        self._history = False  # keep deleted content, so past versions can be read (`at`)
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
        # (update, local, delete set, origin, the ids a remote update added), filled by the
        # doc observer
        self._committed: list[
            tuple[bytes, bool, IdSet, object, Mapping[int, tuple[int, int]] | None]
        ] = []
        self._commit_origin: object = None
        self._commit_fresh: Mapping[int, tuple[int, int]] | None = None
        # whether listeners read `commit_fresh` (the hub's record does): off, it costs nothing
        self.record_fresh = False
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

"""`RoomLog`: a room's writes in the store: appended as the replica commits them, made durable,
and compacted into a snapshot once the log grows past the hub's thresholds.

On one hub (SQLite) the room numbers its own log, and a write is durable once the store committed
the position it was appended at (`taken`: the room's durable version follows, see
`crdtdoc.server.durability`). With a `Cluster` (several hubs on PostgreSQL) the store numbers the
log; the room tracks which positions it has applied (`seqs`), applies other hubs' entries with the
origin `FROM_LOG` (`apply_stored`, `apply_fetched`: shown to its peers, never stored or judged
again), and compacts only what every hub can rebuild (see `crdtdoc.server.cluster`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from crdtdoc.errors import CrdtdocError, StorageError
from crdtdoc.provenance import StoredRecord
from crdtdoc.server.cluster import FROM_LOG, Cluster, SeqTracker
from crdtdoc.server.commit import HorizonWrite, StoredRoom
from crdtdoc.server.horizon import HistoryHorizon
from crdtdoc.server.pgstore import Fetched
from crdtdoc.updates import parse_update

if TYPE_CHECKING:
    from crdtdoc.replica import Replica
    from crdtdoc.server.commit import GroupCommitter
    from crdtdoc.server.config import HubConfig
    from crdtdoc.server.durability import DurableAnnouncer
    from crdtdoc.server.metrics import HubMetrics
    from crdtdoc.server.provenance import ProvenanceRecorder
    from crdtdoc.server.schedule import Scheduler


class LoggedRoom(Protocol):
    """What a room's log reads of its room (`crdtdoc.server.room.Room` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> HubConfig: ...

    @property
    def replica(self) -> Replica: ...

    @property
    def committer(self) -> GroupCommitter: ...

    @property
    def cluster(self) -> Cluster | None: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def metrics(self) -> HubMetrics | None: ...

    @property
    def announcer(self) -> DurableAnnouncer: ...

    @property
    def provenance(self) -> ProvenanceRecorder: ...


log = logging.getLogger("crdtdoc.hub.room")

RETRY_COMPACTION_SECONDS = 1.0
"""With several hubs: how long a room waits to compact again when its log had a gap."""


class RoomLog:
    """What one room has written to the store, and what of it is durable."""

    def __init__(self, room: LoggedRoom) -> None:
        self.room = room
        self.seqs = SeqTracker()  # shared log positions applied (with a cluster)
        self.own_durable = asyncio.Event()  # set whenever all own appends are durable
        self.size_bytes = 0  # what the store holds for the room: snapshot and log
        self._seq = 0  # log position of the last committed update
        self._durable_seq = 0
        self._updates = 0  # log entries (and bytes) since the last snapshot
        self._bytes = 0
        self._snapshot_seq = 0
        self._compacting = False
        self._undurable_since: float | None = None  # when the oldest unstored update came
        config = room.config
        self.horizon = (
            HistoryHorizon(config.history_horizon)
            if config.history and config.history_horizon is not None
            else None
        )

    def restore(self, stored: StoredRoom) -> None:
        """Takes up the log where the store left it when the room was loaded."""
        if self.room.cluster is not None:
            self.seqs = SeqTracker(stored.last_seq)
            self._snapshot_seq = stored.snapshot_seq
        else:
            self._seq = self._durable_seq = stored.last_seq
        self._updates = len(stored.updates)
        self._bytes = sum(len(u) for u in stored.updates)
        if self.horizon is not None:
            self.horizon.restore(self.room.name, stored.marks)
        self.size_bytes = len(stored.snapshot or b"") + self._bytes

    @property
    def fully_durable(self) -> bool:
        """Whether every update this hub appended is durable."""
        return self._durable_seq == self._seq

    def committed(
        self, update: bytes, from_log: bool, records: tuple[StoredRecord, ...] = ()
    ) -> None:
        """The replica committed `update`: append it to the store with its provenance rows
        `records`, or, when it came from the shared log (`from_log`: stored already), only have
        the store acknowledge it."""
        room = self.room
        if from_log:
            room.committer.touch(room.name, self.taken)  # stored already: durable now
        else:
            self._seq += 1
            if self._undurable_since is None:
                self._undurable_since = room.scheduler.monotonic()
            room.committer.append(room.name, self._seq, update, self.taken, records)
        self._updates += 1
        self._bytes += len(update)
        self.size_bytes += len(update)

    def compact_if_due(self) -> None:
        """Compacts once the log has grown past the hub's thresholds."""
        config = self.room.config
        if self._updates >= config.compact_log_updates or self._bytes >= config.compact_log_bytes:
            self.compact()

    def compact(self) -> None:
        """Replaces the log so far with a snapshot, in the background and atomically: queued
        behind this hub's appends on SQLite, a transaction of its own on PostgreSQL."""
        room = self.room
        if self._updates == 0:
            return
        if room.cluster is not None:
            if not self._compacting:
                self._compacting = True
                room.scheduler.spawn(self._compact_shared(room.cluster))
            return
        horizon = self._horizon()
        snapshot = room.replica.encode_snapshot()
        if room.metrics is not None:
            room.metrics.compactions.inc()
        room.committer.compact(room.name, self._seq, snapshot, self.taken, horizon)
        self.size_bytes = len(snapshot)
        self._updates = 0
        self._bytes = 0

    async def _compact_shared(self, cluster: Cluster) -> None:
        """Compacts the shared log up to the last position this hub has applied without a gap.
        The snapshot may hold more (entries ahead, this hub's own unstored writes): replaying
        those later changes nothing. It must not hold less, so no struct from the log may wait
        in the causal buffer (peers' waiting updates are not stored, and do not count);
        deletions waiting for their ids go into the snapshot (a deletion of ids that never come
        must not stop compaction for good). Two hubs never compact a room at once
        (`PostgresStore.compact`)."""
        room = self.room
        try:
            seq = self.seqs.applied
            if seq <= self._snapshot_seq or room.replica.pending_of(FROM_LOG)[0]:
                # a gap in the log, or entries waiting for one: try again once it may be
                # filled (anti-entropy reads what Redis lost), not only at the next commit
                room.scheduler.call_later(RETRY_COMPACTION_SECONDS, self.compact)
                return
            horizon = self._horizon()
            snapshot = room.replica.encode_snapshot()
            stored = await cluster.store.compact(room.name, seq, snapshot, horizon)
            if stored and room.metrics is not None:
                room.metrics.compactions.inc()
            # Done here or by another hub: either way the log up to `seq` is folded.
            self._snapshot_seq = max(self._snapshot_seq, seq)
            self.size_bytes = len(snapshot)
            self._updates = 0
            self._bytes = 0
        except StorageError as exc:
            log.warning("compaction failed", extra={"room": room.name, "error": str(exc)})
        finally:
            self._compacting = False

    def _horizon(self) -> HorizonWrite | None:
        """With a history horizon: what it collects now, and writes (`HistoryHorizon`)."""
        if self.horizon is None:
            return None
        room = self.room
        room.provenance.whole_next()  # its older rows may go: the next one stands alone
        return self.horizon.at_compaction(room.replica, room.scheduler.wall())

    # -- the shared log (with a cluster) ---------------------------------------------------

    def apply_stored(self, seq: int, data: bytes) -> bool:
        """Applies log entry `seq`, stored by any hub (ignored if already applied). False if
        `data` does not even parse (damaged on the way): the entry must be read from the log."""
        if seq <= self.seqs.applied or seq in self.seqs.ahead:
            return True
        try:
            parsed = parse_update(data)
        except CrdtdocError:
            return False
        self.seqs.add(seq)
        try:
            self.room.replica.apply_update(data, parsed=parsed, origin=FROM_LOG, trusted=True)
        except CrdtdocError as exc:
            log.error(
                "a stored update was refused",
                extra={"room": self.room.name, "seq": seq, "error": str(exc)},
            )
        return True

    def apply_fetched(self, fetched: Fetched) -> None:
        """Applies what a catch-up read from the log: the snapshot, if any, then entries."""
        if fetched.snapshot is not None and fetched.snapshot_seq > self.seqs.applied:
            try:
                self.room.replica.apply_update(fetched.snapshot, origin=FROM_LOG, trusted=True)
            except CrdtdocError as exc:
                log.error(
                    "a stored snapshot was refused",
                    extra={"room": self.room.name, "error": str(exc)},
                )
                return
            self.seqs.skip_to(fetched.snapshot_seq)
            self._snapshot_seq = max(self._snapshot_seq, fetched.snapshot_seq)
        for seq, data in fetched.entries:
            self.apply_stored(seq, data)

    def taken(self) -> Callable[[], None]:
        """The store took this room's writes into a transaction: remember what they cover."""
        room = self.room
        version, seq = room.replica.version(), self._seq
        since, self._undurable_since = self._undurable_since, None

        def durable() -> None:
            if since is not None and room.metrics is not None:
                room.metrics.durable_seconds.observe(room.scheduler.monotonic() - since)
            self._durable_seq = max(self._durable_seq, seq)
            if self._durable_seq == self._seq:
                self.own_durable.set()
            room.announcer.durable(version)

        return durable

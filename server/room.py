"""`Room`: one shared document on the hub, the small core the other room modules hang on.

Every message a peer sends goes through one ordered path (docs/SECURITY.md, "The write path"):
budgets (`crdtdoc.server.limits`), parse (`crdtdoc.protocol`, `crdtdoc.updates`), the arrival
checks of `crdtdoc.server.write_gate`, the replica's causal buffer, the semantic gate
(`crdtdoc.semantics`) and the item rules (`crdtdoc.server.access`) just before the engine applies
it; then what the replica commits is appended to the store's log, fanned out to the other peers
(each message encoded once for all) and, once the store has committed it, acknowledged with the
room's durable version (`crdtdoc.server.durability`). The log, compaction and, with a `Cluster`
(several hubs on PostgreSQL), the entries other hubs stored live in `crdtdoc.server.room_log`;
presence in `crdtdoc.server.presence`; requests in `crdtdoc.server.room_requests`, guarded
commits in `crdtdoc.server.guarded`.

No method awaits, and time and background work come from an injected `Scheduler`, so the core can
be driven without sockets or an event loop (tests/server/test_room.py).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from crdtdoc.errors import (
    CrdtdocError,
    InvalidUpdate,
    RateLimited,
    RemoteError,
    ReplicaRebuilt,
    StorageError,
)
from crdtdoc.protocol.awareness import AwarenessEntry
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Extension,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    carried_update,
    encode_message,
)
from crdtdoc.protocol.session import SyncSession
from crdtdoc.replica import Replica
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT
from crdtdoc.server.cluster import FROM_LOG, Cluster, SeqTracker
from crdtdoc.server.commit import GroupCommitter, StoredRoom
from crdtdoc.server.config import HubConfig
from crdtdoc.server.coordination import Coordinator
from crdtdoc.server.durability import DurableAnnouncer
from crdtdoc.server.guarded import GuardedCommits
from crdtdoc.server.intake import Incoming, hub_limits, pending_holder, read_message
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.metrics import HubMetrics
from crdtdoc.server.peer import Delivered, Peer
from crdtdoc.server.pgstore import Fetched
from crdtdoc.server.presence import KeptStatus, RoomPresence
from crdtdoc.server.provenance import ProvenanceRecorder
from crdtdoc.server.room_log import RoomLog
from crdtdoc.server.room_requests import receive_extension
from crdtdoc.server.schedule import Scheduler
from crdtdoc.server.write_gate import WriteGate
from crdtdoc.slicing import SLICE_STRUCTS, slice_update
from crdtdoc.updates import ParsedUpdate
from crdtdoc.versions import Version

GATE_MARKS = (b"frozen", b"freeze", b"approval:", AGENTS_ROOT.encode())
"""Bytes in an update that may change a spec's freeze (a cheap, conservative test)."""

log = logging.getLogger("crdtdoc.hub.room")

REBUILD_STRUCTS = 2000
"""What an update the engine refuses is charged (plus a struct per 16 bytes of the room): the
replica rebuilt its document, which takes time in proportion to the room."""


class Room:
    """A loaded room. All methods run on the hub's event loop; none of them awaits."""

    def __init__(
        self,
        name: str,
        committer: GroupCommitter,
        config: HubConfig,
        coordinator: Coordinator,
        limits: RateLimits,
        cluster: Cluster | None = None,
        scheduler: Scheduler | None = None,
        kept: dict[int, KeptStatus] | None = None,
    ) -> None:
        self.name = name
        self.cluster = cluster
        self.coordinator = coordinator
        self.committer = committer
        self.scheduler = scheduler or Scheduler()
        self.config = config
        self.log = RoomLog(self)
        self.metrics: HubMetrics | None = None  # set by the hub
        self._limits = limits
        self.replica = Replica(
            agent="hub",
            limits=hub_limits(config),
            clock=self.scheduler.monotonic,
            history=config.history,
        )
        self.replica.on_refused = self._refused
        self.replica.record_fresh = True  # for the provenance record
        self.replica.pending_holder = pending_holder
        self.replica.share_pending(limits.waiting)  # a sender's share counts over all rooms
        self._expiry_due = False  # a sweep of the causal buffer is scheduled
        self._whole: tuple[int, bytes] | None = None  # (replica generation, whole_state())
        self._state: tuple[int, dict[int, int]] | None = None  # (generation, state vector copy)
        self.gate = WriteGate(name, self.replica, config.max_room_bytes)
        self.provenance = ProvenanceRecorder(self.scheduler.wall)
        self.peers: dict[Peer, SyncSession] = {}
        publish = None
        if cluster is not None:
            publish = lambda data: cluster.publish_presence(name, data)  # noqa: E731
        self.presence = RoomPresence(
            name,
            config.max_awareness_bytes,
            limits,
            self._broadcast,
            publish,
            self.scheduler.monotonic,
            self.scheduler.wall,
            self.scheduler.call_later,
            kept,
        )
        self.announcer = DurableAnnouncer(lambda: self.peers, self.scheduler)
        self.guarded = GuardedCommits(self)
        self.last_active = self.scheduler.monotonic()
        self.origin: tuple[Peer, bytes] | None = None  # the peer whose update is being applied
        # peer -> the slices of its update still to apply, and the message type of the last one
        self._slices: dict[Peer, tuple[deque[tuple[bytes, ParsedUpdate]], bool]] = {}

    @property
    def durable(self) -> Version:
        """The version the store holds durably."""
        return self.announcer.version

    @property
    def owners(self) -> dict[int, str]:
        """client id -> the identity that introduced it."""
        return self.gate.owners

    @property
    def awareness(self) -> dict[int, AwarenessEntry]:
        return self.presence.entries

    @property
    def presence_seen(self) -> dict[int, float]:
        return self.presence.seen

    @property
    def size_bytes(self) -> int:
        """What the store holds for the room (snapshot and log), in bytes."""
        return self.log.size_bytes

    @property
    def seqs(self) -> SeqTracker:
        """The positions of the shared log this hub has applied (with a cluster)."""
        return self.log.seqs

    @seqs.setter
    def seqs(self, seqs: SeqTracker) -> None:  # an attribute to `cluster.SharedRoom`
        self.log.seqs = seqs

    @property
    def fully_durable(self) -> bool:
        """Whether every update this hub appended is durable."""
        return self.log.fully_durable

    def taken(self) -> Callable[[], None]:
        """The store took this room's writes into a transaction (`RoomLog.taken`)."""
        return self.log.taken()

    def apply_stored(self, seq: int, data: bytes) -> bool:
        """Applies log entry `seq`, stored by any hub (`RoomLog.apply_stored`)."""
        return self.log.apply_stored(seq, data)

    def apply_fetched(self, fetched: Fetched) -> None:
        """Applies what a catch-up read from the shared log (`RoomLog.apply_fetched`)."""
        self.log.apply_fetched(fetched)

    # -- loading ---------------------------------------------------------------------------

    def restore(self, stored: StoredRoom) -> None:
        """Rebuilds the room from the store; raises `CrdtdocError` if stored data is invalid."""
        # Trusted: accepted when stored, so data stored under older rules still loads.
        if stored.snapshot is not None:
            self.replica.apply_update(stored.snapshot, trusted=True)
        for update in stored.updates:
            self.replica.apply_update(update, trusted=True)
        if self.replica.pending():
            if self.cluster is None:
                raise StorageError(
                    f"room {self.name!r}: the stored log misses data its updates depend on"
                )
            # Another hub may have stored the missing data's dependants just before dying;
            # clients that hold it send it when they sync. Keep serving.
            log.warning("stored log waits for missing data", extra={"room": self.name})
        self.log.restore(stored)
        self.announcer.restore(self.replica.version())
        self.gate.restore()
        self.replica.on_update(self._on_commit)

    # -- peers -----------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        session = SyncSession(self.replica, origin=peer)
        self.peers[peer] = session
        peer.resync = self._resync_messages
        peer.on_drained = self._drained
        self.last_active = self.scheduler.monotonic()
        for message in session.open():  # our state vector: the peer answers with what we lack
            peer.send(message)
        present = self.presence.message()
        if present is not None:
            peer.send(present)

    def leave(self, peer: Peer) -> None:
        if self.peers.pop(peer, None) is None:
            return
        self._slices.pop(peer, None)
        self.provenance.forget(peer)
        self.replica.drop_pending(lambda origin: origin is not peer)
        self.coordinator.forget(peer)
        self.last_active = self.scheduler.monotonic()
        self.presence.leave(peer)

    def receive(self, peer: Peer, data: bytes, incoming: Incoming | None = None) -> None:
        """Handles one message from `peer` (`incoming`: as `read_message` read it, if it was).
        Raises `RemoteError` (close the connection) for bad input; the room itself is unharmed:
        nothing invalid was applied or stored.

        A large update is applied one slice now, the rest by `step`. What the message costs is
        charged to the sender's budgets (`crdtdoc.server.limits`): the hub waits out a debt
        before it reads or applies more of that identity's work."""
        self.last_active = self.scheduler.monotonic()
        if incoming is None:
            incoming = read_message(data, self.replica.applied()[0], self.replica.holds)
        message = incoming.message
        if isinstance(message, Awareness):
            if peer.grant is not None and peer.grant.read_only:
                if not peer.told_read_only:  # dropped, said once (stock clients always send it)
                    peer.told_read_only = True
                    peer.send(encode_message(Auth("read-only token: presence is not relayed")))
                return
            self.presence.receive(peer, message.data)
        elif isinstance(message, QueryAwareness):
            present = self.presence.message()
            if present is not None:
                peer.send(present)
        elif isinstance(message, Extension):
            receive_extension(self, peer, message)
        elif isinstance(message, (SyncStep2, SyncUpdate)):
            exceeded = self._limits.update(peer.rate_key, len(message.update))
            if exceeded:
                raise RateLimited(f"update refused: {exceeded}; slow down and reconnect")
            if incoming.known:  # brings nothing (compared as bytes): nothing to judge or charge
                self._apply(peer, message, message.update, None)
                return
            parsed = incoming.parsed
            if parsed is not None:  # charged before it is judged: each struct, and each deleted
                # range as written (judged one by one; merging may leave none, e.g. empty ones:
                # at least one per 4 bytes of delete set), costs time, applied or refused
                ranges = max(parsed.delete_set.range_count(), (parsed.size - parsed.ds_offset) // 4)
                self._limits.structs(peer.rate_key, parsed.count + ranges)
            parsed = self.gate.authorize(peer, message.update, self.size_bytes, parsed)
            slices = incoming.slices or []
            live = self.replica.applied()[0]
            if parsed.count > SLICE_STRUCTS and len(slices) <= 1 and incoming.cut_on != live:
                # left whole against a copy of the state that has moved on since: cut it again
                slices = slice_update(message.update, parsed, live)
            if len(slices) > 1 and self.replica.is_news(parsed):
                self._slices[peer] = (deque(slices), isinstance(message, SyncStep2))
                self.step(peer)
            else:
                self._apply(peer, message, message.update, parsed)
        else:  # sync step 1: answer with step 2, paid for from the asker's byte budget
            if isinstance(message, SyncStep1) and message.state_vector == b"\x00":
                replies = [self.whole_state()]  # asks for everything: shared bytes
            else:
                replies = self.peers[peer].handle(message)
            for reply in replies:
                peer.send(reply)
            if isinstance(message, SyncStep1):  # what the peer lacked is queued: with what it
                peer.whole_room_queued = True  # has (its state vector), the whole room
                peer.announce(message.state_vector)
            self._limits.answered(peer.rate_key, sum(len(r) for r in replies))

    def brings_nothing(self, data: bytes) -> bool:
        """Whether a peer's message is an update that brings the room nothing, told from its
        bytes (`Replica.holds`) without copying them: what an up-to-date peer sends as its
        step 2 on reconnect."""
        update = carried_update(data)
        return update is not None and self.replica.holds(update)

    def step(self, peer: Peer) -> bool:
        """Applies the next slice of `peer`'s large update; True while more remain. Raises as
        `receive` does (the slices applied before stay, as if sent one by one)."""
        queued = self._slices.get(peer)
        if queued is None:
            return False
        slices, step2 = queued
        data, parsed = slices.popleft()
        last = not slices
        if last:
            del self._slices[peer]
        message = SyncStep2(data) if last and step2 else SyncUpdate(data)
        try:
            self._apply(peer, message, data, parsed)
        except BaseException:
            self._slices.pop(peer, None)
            raise
        return not last

    def _apply(
        self, peer: Peer, message: Message, data: bytes, parsed: ParsedUpdate | None
    ) -> None:
        """Hands one authorized update to the peer's sync session (apply, or wait)."""
        self.origin = (peer, data)
        rebuilds = self.replica.rebuilds
        try:  # a full causal buffer makes the session ask the peer to resync instead
            replies = self.peers[peer].handle(message, parsed)
            if isinstance(message, SyncStep2):
                peer.synced_offline_work()
        except ReplicaRebuilt as exc:
            raise InvalidUpdate(f"update refused by the CRDT engine: {exc}") from None
        finally:
            self.origin = None
            if self.replica.rebuilds != rebuilds:  # the engine refused it: a costly refusal
                self._limits.structs(peer.rate_key, REBUILD_STRUCTS + self.size_bytes // 16)
        for reply in replies:
            peer.send(reply)
        if self.replica.pending_of(peer.rate_key)[0] and not self._expiry_due:
            self._expiry_due = True
            self.scheduler.call_later(self.config.max_waiting_seconds / 2, self._expire)

    def _refused(self, origin: object, exc: CrdtdocError) -> None:
        """A peer's update refused as it left the causal buffer: close that peer's link."""
        if isinstance(origin, Peer) and origin in self.peers and isinstance(exc, RemoteError):
            origin.close_soon(exc.close_code, str(exc))
        log.info("buffered update refused", extra={"room": self.name, "error": str(exc)})

    @property
    def limits(self) -> RateLimits:
        """The rates and budgets of the identities writing here (shared by the hub's rooms)."""
        return self._limits

    def unload(self) -> None:
        """The hub lets go of this room: what waits here stops counting against its senders,
        and the replica lets go of its engine document, so the room can be freed."""
        self.replica.drop_pending(lambda origin: False)
        self.replica.release()
        self.presence.close()

    def _expire(self) -> None:
        """Drops peers' updates that waited too long for what they build on, and asks each
        sender still here to sync again: it sends what the hub lacks, if it has it."""
        self._expiry_due = False
        dropped = self.replica.expire_pending(self.config.max_waiting_seconds)
        for origin in {o for o in dropped if isinstance(o, Peer)}:
            session = self.peers.get(origin)
            if session is not None:
                origin.send(session.step1())
        if dropped:
            log.info("waiting updates expired", extra={"room": self.name, "count": len(dropped)})
        if self.replica.pending_count:
            self._expiry_due = True
            self.scheduler.call_later(self.config.max_waiting_seconds / 2, self._expire)

    # -- presence relayed between hubs (with a cluster) -------------------------------------

    def apply_presence(self, hub: bytes, data: bytes) -> None:
        """Presence changes of another hub's clients: taken unless a client here owns the id."""
        self.presence.apply_remote(data, self._local_awareness_clients())

    def local_presence(self) -> bytes | None:
        """The presence of this hub's own clients, encoded (None if nobody is present)."""
        return self.presence.local(self._local_awareness_clients())

    def expire_remote_presence(self, now: float, timeout: float) -> None:
        """Removes presence another hub stopped renewing (it died, or lost its clients)."""
        self.presence.expire_remote(now, timeout)

    def _local_awareness_clients(self) -> set[int]:
        local = {client for peer in self.peers for client in peer.awareness_clients}
        return local | set(self.presence.kept)

    def _resync_messages(self, peer: Peer) -> list[bytes]:
        """What a peer whose queue was dropped needs, as a sync step 2 (the queue may have held
        the step 2 it waits for): the room past the state vector of the peer's last drained
        queue (`Delivered`), or the whole room when that is not known. Every struct the dropped
        messages carried was committed after that moment, so it is past that state vector, and
        an update from a state vector carries the whole delete set, so deletions made while the
        peer lagged are in it too. Then presence and durability (a delta against what the peer
        held then, when it takes deltas). What is sent is paid from the peer's byte budget,
        like answering its sync step 1."""
        delivered = peer.delivered
        state = delivered.state if delivered is not None else None
        if state is None:
            messages = [self.whole_state()]
        else:
            since = Version(state)
            messages = [encode_message(SyncStep2(self.replica.encode_update(since)))]
        peer.whole_room_queued = True
        # Once written, this resync covers the room as it is now: the next one starts here,
        # even if the queue never drains in between (a peer that keeps falling behind).
        peer.resynced = self._holding(peer)
        present = self.presence.message()
        if present is not None:
            messages.append(present)
        if peer.extensions:
            base = delivered.durable if delivered is not None else None
            if peer.durable_deltas and base is not None:
                messages.append(self.announcer.delta_message(base))
            else:  # its deltas since an unknown point may be lost: the full version
                messages.append(self.announcer.message())
        self._limits.answered(peer.rate_key, sum(len(m) for m in messages))
        return messages

    def _drained(self, peer: Peer) -> None:
        """Everything queued for `peer` was written: note what it holds now, for a resync to
        start from."""
        peer.delivered = self._holding(peer)

    def _holding(self, peer: Peer) -> Delivered:
        """What `peer` holds once everything queued for it so far is written. Every commit is
        queued to every peer but its sender as it happens, so that covers the room's state
        vector now, once the room had queued the peer all it held before."""
        state = self._state_copy() if peer.whole_room_queued else None
        return Delivered(state, self.announcer.told if peer.durable_deltas else None)

    def _state_copy(self) -> dict[int, int]:
        """The room's state vector now: one copy per version of the room, shared by the peers
        that note it, never changed."""
        generation = self.replica.generation
        if self._state is None or self._state[0] != generation:
            self._state = (generation, dict(self.replica.applied()[0]))
        return self._state[1]

    def whole_state(self) -> bytes:
        """The room's whole state as a sync step 2 message, encoded once per version of the
        room: every peer that needs all of it (a resync, a first sync from nothing) is handed
        the same bytes, so many such peers cost one copy."""
        generation = self.replica.generation
        if self._whole is None or self._whole[0] != generation:
            self._whole = (generation, encode_message(SyncStep2(self.replica.encode_update())))
        return self._whole[1]

    def _broadcast(self, message: bytes, exclude: Peer | None = None) -> None:
        for peer in self.peers:
            if peer is not exclude:
                peer.send(message)

    # -- commits and durability ------------------------------------------------------------

    def _on_commit(self, update: bytes, local: bool) -> None:
        """The replica committed `update`: log it, fan it out (encoded once), maybe compact."""
        self._whole = None  # out of date: not kept in memory until someone asks again
        from_log = self.cluster is not None and self.replica.commit_origin is FROM_LOG
        records = self.provenance.of_commit(self.replica, self.origin)
        self.log.committed(update, from_log, records)
        if from_log:
            self.gate.learn(update)  # ids registered, deletions logged through other hubs
        # Cheap, conservative tests of what an update may change in the gate's facts: a kind
        # is recorded only through the registry; a freeze (or its gate) by a spec's keys, a
        # registration, or a deletion (an empty delete set ends with a zero).
        if ARTIFACTS_ROOT.encode() in update:
            self.gate.forget()
        elif any(mark in update for mark in GATE_MARKS) or update[-1:] != b"\x00":
            self.gate.forget_freeze()
        origin = self.origin
        exclude = origin[0] if origin is not None and origin[1] == update else None
        self._broadcast(encode_message(SyncUpdate(update)), exclude=exclude)
        self.log.compact_if_due()

    def has_claim(self, task_list: str, task_id: str, agent: str) -> bool:
        """Whether the room's task list shows `agent` claiming the task (True when the hub
        cannot tell: only a claim surely gone frees its lease)."""
        if self.replica.artifacts().get(task_list) != "tasks":
            return True
        try:
            return agent in self.replica.tasks(task_list).get(task_id).claimants
        except CrdtdocError:
            return True

    def drop_claim(self, task_list: str, task_id: str, agent: str) -> None:
        """Removes `agent`'s claim on a task (its claim lease expired), as the hub."""
        try:
            self.replica.tasks(task_list).drop_claim(task_id, agent)
        except CrdtdocError as exc:
            log.info("expired claim not dropped", extra={"room": self.name, "error": str(exc)})

"""`Room`: one shared document on the hub: its replica, its peers, presence and durability.

Every update a peer sends goes through the room's `Replica`, which validates it and holds it until
its dependencies are present. What the replica commits is appended to the store's log, fanned out
to the other peers (each message encoded once for all), and, once the store has committed it,
acknowledged to crdtdoc clients with the room's durable version.

With a `Cluster` (several hubs on PostgreSQL), the store numbers the log; the room tracks which
positions it has applied (`seqs`), applies other hubs' entries with the origin `FROM_LOG` (shown to
its peers, never stored again), decides guarded commits inside a database transaction that holds
the room's log, and compacts only what every hub can rebuild (see `server.cluster`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from crdtdoc.errors import (
    CrdtdocError,
    Forbidden,
    InvalidMessage,
    InvalidUpdate,
    RateLimited,
    RemoteError,
    ReplicaRebuilt,
    RoomFull,
    StorageError,
)
from crdtdoc.itemindex import Locator
from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from crdtdoc.protocol.extension import (
    Durable,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Extension,
    QueryAwareness,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.protocol.session import SyncSession
from crdtdoc.replica import Replica, ReplicaLimits
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT
from crdtdoc.semantics import check_update
from crdtdoc.updates import Item, ParsedUpdate, carried, parse_update
from crdtdoc.versions import Version
from server.access import (
    ARTIFACT_KINDS,
    DeletionLedger,
    RoomFacts,
    Writer,
    deletion_ledger,
    judge_deletes,
    judge_items,
)
from server.cluster import Cluster, SeqTracker
from server.commit import GroupCommitter, StoredRoom
from server.config import HubConfig
from server.coordination import Coordinator
from server.limits import RateLimits
from server.metrics import HubMetrics
from server.peer import Peer
from server.pgstore import Fetched, append_in, fetch_in
from server.shared_coordination import SharedCoordinator, fence_refusal_in

log = logging.getLogger("crdtdoc.hub.room")

MAX_AWARENESS_CLIENTS_PER_PEER = 16
"""Awareness client ids one connection may publish (a Yjs provider uses one)."""

HUB_LIMITS = ReplicaLimits(max_pending_updates=10_000, max_pending_bytes=32 * 1024 * 1024)

DURABLE_INTERVAL = 0.02
"""Seconds between two durable-version announcements to a room's clients, at least (see
`Room._announce_durable`)."""
DURABLE_BYTES_PER_SECOND = 2 * 1024 * 1024
"""Announcement bytes per second a room may send each client: a large version (a long history of
scattered deletions) is announced less often, down to one per 100 ms per 200 KB of version."""

FROM_LOG = object()
"""`Replica.commit_origin` of updates read from the shared log: stored already, not again."""


class Room:
    """A loaded room. All methods run on the hub's event loop; none of them awaits."""

    def __init__(
        self,
        name: str,
        committer: GroupCommitter,
        config: HubConfig,
        coordinator: Coordinator | SharedCoordinator,
        limits: RateLimits,
        cluster: Cluster | None = None,
    ) -> None:
        self.name = name
        self._cluster = cluster
        self.seqs = SeqTracker()  # shared log positions applied (with a cluster)
        self._snapshot_seq = 0
        self._compacting = False
        self._own_durable = asyncio.Event()  # set whenever all own appends are durable
        self._remote_presence: dict[int, float] = {}  # client id -> last heard (other hubs)
        self.presence_seen: dict[int, float] = {}  # client id -> Unix time of its last presence
        self._durable_told_at = 0.0  # when clients were last told the durable version
        self._durable_due = False  # a durable announcement is scheduled
        self._durable_gap = DURABLE_INTERVAL  # the least time until the next one
        self.metrics: HubMetrics | None = None  # set by the hub
        self._undurable_since: float | None = None  # when the oldest unstored update came
        self._coordinator = coordinator
        self._limits = limits
        self.owners: dict[int, str] = {}  # client id -> the identity that introduced it
        self.size_bytes = 0
        self._frozen: frozenset[str] | None = None
        self._kinds: dict[str, str] | None = None  # artifact kinds recorded (cached)
        self._ledger = DeletionLedger()
        self.replica = Replica(agent="hub", limits=HUB_LIMITS)
        self.replica.judge = self._judge
        self.replica.on_refused = self._refused
        self.peers: dict[Peer, SyncSession] = {}
        self.awareness: dict[int, AwarenessEntry] = {}
        self.durable = Version()
        self.last_active = time.monotonic()
        self._committer = committer
        self._config = config
        self._seq = 0  # log position of the last committed update
        self._durable_seq = 0
        self._log_updates = 0  # log entries (and bytes) since the last snapshot
        self._log_bytes = 0
        self._origin: tuple[Peer, bytes] | None = None

    # -- loading ---------------------------------------------------------------------------

    def restore(self, stored: StoredRoom) -> None:
        """Rebuilds the room from the store; raises `CrdtdocError` if stored data is invalid."""
        # Trusted: accepted when stored, so data stored under older rules still loads.
        if stored.snapshot is not None:
            self.replica.apply_update(stored.snapshot, trusted=True)
        for update in stored.updates:
            self.replica.apply_update(update, trusted=True)
        if self.replica.pending():
            if self._cluster is None:
                raise CrdtdocError(
                    f"room {self.name!r}: the stored log misses data its updates depend on"
                )
            # Another hub may have stored the missing data's dependants just before dying;
            # clients that hold it send it when they sync. Keep serving.
            log.warning("stored log waits for missing data", extra={"room": self.name})
        if self._cluster is not None:
            self.seqs = SeqTracker(stored.last_seq)
            self._snapshot_seq = stored.snapshot_seq
        else:
            self._seq = self._durable_seq = stored.last_seq
        self._log_updates = len(stored.updates)
        self._log_bytes = sum(len(u) for u in stored.updates)
        self.size_bytes = len(stored.snapshot or b"") + self._log_bytes
        self.durable = self.replica.version()
        # Names in the registry were checked against each writer's token when written.
        self.owners = dict(self.replica.agents())
        self._ledger = deletion_ledger(self.replica, self.owners)
        self.replica.on_update(self._on_commit)

    @property
    def fully_durable(self) -> bool:
        return self._durable_seq == self._seq

    # -- peers -----------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        session = SyncSession(self.replica, origin=peer)
        self.peers[peer] = session
        peer.resync = self._resync_messages
        self.last_active = time.monotonic()
        for message in session.open():  # our state vector: the peer answers with what we lack
            peer.send(message)
        if self._present():
            peer.send(self._awareness_message(self._present()))

    def leave(self, peer: Peer) -> None:
        if self.peers.pop(peer, None) is None:
            return
        self._coordinator.forget(peer)
        self.last_active = time.monotonic()
        gone = []
        for client in peer.awareness_clients:
            entry = self.awareness.get(client)
            if entry is not None and not entry.removed:
                gone.append(AwarenessEntry(client, entry.clock + 1, "null"))
                self.awareness[client] = gone[-1]
        if gone:
            self._broadcast(self._awareness_message(gone), exclude=peer)
            if self._cluster is not None:
                self._cluster.publish_presence(self.name, encode_awareness(gone))

    def receive(self, peer: Peer, data: bytes) -> None:
        """Handles one message from `peer`. Raises `RemoteError` (close the connection) for bad
        input; the room itself is unharmed: nothing invalid was applied or stored."""
        self.last_active = time.monotonic()
        message = decode_message(data)
        if isinstance(message, Awareness):
            if peer.grant is not None and peer.grant.read_only:
                if not peer.told_read_only:  # dropped, said once (stock clients always send it)
                    peer.told_read_only = True
                    peer.send(encode_message(Auth("read-only token: presence is not relayed")))
                return
            self._receive_awareness(peer, message.data)
        elif isinstance(message, QueryAwareness):
            if self._present():
                peer.send(self._awareness_message(self._present()))
        elif isinstance(message, Extension):
            self._receive_extension(peer, message)
        elif isinstance(message, (SyncStep2, SyncUpdate)):
            exceeded = self._limits.update(peer.rate_key, len(message.update))
            if exceeded:
                raise RateLimited(f"update refused: {exceeded}; slow down and reconnect")
            parsed = self.authorize(peer, message.update)
            self._origin = (peer, message.update)
            try:  # a full causal buffer makes the session ask the peer to resync instead
                replies = self.peers[peer].handle(message, parsed)
            except ReplicaRebuilt as exc:
                raise InvalidUpdate(f"update refused by the CRDT engine: {exc}") from None
            finally:
                self._origin = None
            for reply in replies:
                peer.send(reply)
        else:
            for reply in self.peers[peer].handle(message):  # sync step 1: answer with step 2
                peer.send(reply)

    # -- who may write what ----------------------------------------------------------------

    def authorize(self, peer: Peer, update: bytes) -> ParsedUpdate:
        """The gate an update passes on arrival: read-only tokens, room size, client-id
        ownership and deletions (see `server.access`). Nothing new is judged, so a read-only
        client's empty sync step 2 passes. The items themselves are judged as they are applied
        (`_judge`), once what they build on is there. Returns the parsed update (for applying
        it without parsing again)."""
        parsed = parse_update(update, details=True)
        grant, identity = peer.grant, peer.identity
        if not self.replica.is_news(parsed):
            if identity is not None and parsed.delete_set:  # deleted by another one first
                self._ledger.record(identity, parsed.delete_set)
            return parsed
        if grant is not None and grant.read_only:
            raise Forbidden("this token is read-only: writes are refused")
        if self.size_bytes + len(update) > self._config.max_room_bytes:
            raise RoomFull(
                f"room {self.name!r} would exceed {self._config.max_room_bytes} bytes; "
                "the hub refuses to grow it further"
            )
        version = self.replica.version()
        state = version.clocks
        fresh = [c for c, s in parsed.structs.items() if s.end > state.get(c, 0)]
        if identity is not None:
            for client in fresh:
                owner = self.owners.get(client)
                if owner is not None and owner != identity:
                    raise Forbidden(
                        f"client id {client} belongs to {owner}; an agent writes only under its "
                        "own client ids"
                    )
        deletes = None
        if parsed.delete_set:
            # Deleting what the update itself adds is judged with those items, as they apply.
            deletes = parsed.delete_set.difference(version.deleted).difference(carried(parsed))
        if deletes:
            writer = self._writer(peer, fresh)
            judge_deletes(deletes, self.replica.item_index(), writer, self._facts())
        if identity is not None:
            for client in fresh:
                self.owners.setdefault(client, identity)
            if parsed.delete_set:  # all of it: two agents may delete one id concurrently
                self._ledger.record(identity, parsed.delete_set)
        return parsed

    def _writer(self, peer: Peer, fresh: list[int] | None = None) -> Writer:
        """The rights of the author of an update (`fresh`: client ids it introduces)."""
        identity = peer.identity
        ledger, deleted = self._ledger, self.replica.version().deleted
        if identity is None:
            mine = set(fresh or ())
            return Writer(None, peer.grant, mine.__contains__)
        return Writer(
            identity,
            peer.grant,
            lambda client: self.owners.get(client, identity) == identity,
            lambda claimed: ledger.may_claim(identity, claimed, deleted),
        )

    def _facts(self) -> RoomFacts:
        if self._kinds is None:
            self._kinds = {
                name: kind
                for name, kind in self.replica.artifacts().items()
                if kind in ARTIFACT_KINDS
            }
        return RoomFacts(self._kinds, self._frozen_specs())

    def _judge(
        self, items: list[Item], locator: Locator, state: dict[int, int], origin: object
    ) -> None:
        """The replica's hook: authorizes a peer's items just before they are applied."""
        if not isinstance(origin, Peer):
            return  # the hub's own writes, or what the store already holds
        facts = self._facts()
        touched = judge_items(items, locator, state, self._writer(origin), facts)
        if ARTIFACTS_ROOT in touched or any(facts.kinds.get(str(r)) == "spec" for r in touched):
            self._kinds = None  # a kind, or a spec's freeze, may change: read them again
            self._frozen = None

    def _refused(self, origin: object, exc: CrdtdocError) -> None:
        """A peer's update refused as it left the causal buffer: close that peer's link."""
        if isinstance(origin, Peer) and origin in self.peers and isinstance(exc, RemoteError):
            origin.close_soon(exc.close_code, str(exc))
        log.info("buffered update refused", extra={"room": self.name, "error": str(exc)})

    def _frozen_specs(self) -> frozenset[str]:
        if self._frozen is None:
            frozen = set()
            for name, kind in self.replica.artifacts().items():
                if kind != "spec":
                    continue
                try:
                    if self.replica.spec(name).frozen:
                        frozen.add(name)
                except CrdtdocError:
                    continue
            self._frozen = frozenset(frozen)
        return self._frozen

    def _receive_extension(self, peer: Peer, message: Extension) -> None:
        ext = decode_extension(message)
        if isinstance(ext, Hello):
            peer.extensions = True
            peer.agent = peer.identity or ext.agent  # with a token, its agent name counts
            peer.send(encode_message(encode_extension(Welcome(self.name, self.durable))))
            return
        if not isinstance(ext, Request):
            raise InvalidMessage(f"clients may not send {type(ext).__name__} messages")
        if peer.agent is None:
            raise InvalidMessage("send hello before any request")
        if ext.op == "commit" and self._cluster is None:
            self._reply(peer, self._commit(peer, ext))  # decided now, atomically for the room
            return
        if ext.op == "commit":
            task = asyncio.get_running_loop().create_task(self._commit_shared(peer, ext))
        else:
            task = asyncio.get_running_loop().create_task(
                self._coordinator.handle(self.name, peer, peer.agent, ext.id, ext.op, ext.args)
            )
        task.add_done_callback(lambda done: self._reply_when_done(peer, ext.id, done))

    def _reply(self, peer: Peer, reply: Reply) -> None:
        peer.send(encode_message(encode_extension(reply)))

    def _reply_when_done(self, peer: Peer, request_id: int, task: asyncio.Task[Reply]) -> None:
        if task.cancelled():
            return  # the peer left while waiting
        error = task.exception()
        if error is not None:
            log.error("request failed", exc_info=error)
            self._reply(peer, Reply(request_id, {}, "internal", "the hub failed on this request"))
        else:
            self._reply(peer, task.result())

    def _commit(self, peer: Peer, request: Request) -> Reply:
        """A guarded commit, decided in one step on the hub's loop: applies the request's updates
        only if its fence is current and none of the artifacts `on` changed since `expect`
        (other than by the committer)."""
        commit = _CommitRequest.parse(request)
        if isinstance(commit, Reply):
            return commit
        if commit.fence is not None and isinstance(self._coordinator, Coordinator):
            ok, why = self._coordinator.fence_ok(self.name, *commit.fence)
            if not ok:
                return Reply(commit.id, {}, "fenced", why)
        refusal = self._check_commit(peer, commit)
        if refusal is not None:
            return refusal
        self._apply_commit(peer, commit.updates, origin=None)
        return Reply(commit.id, {"applied": len(commit.updates)})

    async def _commit_shared(self, peer: Peer, request: Request) -> Reply:
        """A guarded commit across hubs: decided inside a PostgreSQL transaction that locks the
        room's log, after applying every entry other hubs stored, and with the fencing token
        read under a share lock; the updates are stored in that same transaction. See
        docs/SCALING.md for why this is linearizable."""
        commit = _CommitRequest.parse(request)
        if isinstance(commit, Reply):
            return commit
        cluster = self._cluster
        if cluster is None:
            return self._commit(peer, request)
        # What this hub accepted before must be in the log first: the commit may build on it.
        while not self.fully_durable:
            self._own_durable.clear()
            await self._own_durable.wait()
        try:
            async with cluster.store.transaction(f"commit to room {self.name!r}") as db:
                cur = await db.execute(
                    "INSERT INTO crdtdoc_rooms AS r VALUES (%s, 0) ON CONFLICT (room) "
                    "DO UPDATE SET last_seq = r.last_seq RETURNING last_seq",
                    (self.name,),
                )  # locks the room's log until the transaction ends
                row = await cur.fetchone()
                if row is not None and row[0] > self.seqs.applied:
                    self.apply_fetched(await fetch_in(db, self.name, self.seqs.applied))
                if commit.fence is not None:
                    why = await fence_refusal_in(db, self.name, *commit.fence)
                    if why is not None:
                        return Reply(commit.id, {}, "fenced", why)
                try:
                    refusal = self._check_commit(peer, commit)
                except RemoteError as exc:
                    peer.close_soon(exc.close_code, str(exc))
                    return Reply(commit.id, {}, "invalid", str(exc))
                if refusal is not None:
                    return refusal
                seqs = await append_in(db, [(self.name, u) for u in commit.updates])
        except StorageError as exc:
            log.error("guarded commit failed", extra={"room": self.name, "error": str(exc)})
            return Reply(commit.id, {}, "unavailable", "the hub's database failed; retry")
        for seq, update in zip(seqs, commit.updates, strict=True):
            self.seqs.add(seq)
            cluster.publish(self.name, seq, update)
        self._apply_commit(peer, commit.updates, origin=FROM_LOG)
        self._committer.touch(self.name, self._taken)  # acknowledge it with the next commit
        return Reply(commit.id, {"applied": len(commit.updates)})

    def _check_commit(self, peer: Peer, commit: _CommitRequest) -> Reply | None:
        """The refusal of a guarded commit (stale `expect`, missing dependencies), or None.
        Raises `RemoteError` for updates the peer may not write at all."""
        if commit.expect is not None:
            stale = self.replica.changes_by_others(commit.expect, commit.on, commit.client)
            if stale:
                described = [c.describe() for c in stale]
                return Reply(
                    commit.id,
                    {"changes": described},
                    "conflict",
                    f"{len(stale)} change(s) since the expected version: "
                    + "; ".join(described[:10]),
                )
        before = dict(self.replica.version().clocks)
        state = dict(before)
        items: list[Item] = []
        for update in commit.updates:
            parsed = self.authorize(peer, update)  # raises for invalid or forbidden updates
            if parsed.missing(state):
                return Reply(
                    commit.id,
                    {},
                    "missing",
                    "the hub lacks data this commit builds on; let the replica sync, then retry",
                )
            for c, structs in parsed.structs.items():
                state[c] = max(state.get(c, 0), structs.end)
            items.extend(parsed.items or [])
        # Every item is judged now, as one update, so the commit applies whole or not at all.
        locator = check_update(self.replica.item_index(), items, before)
        self._judge(items, locator, before, peer)
        return None

    def _apply_commit(self, peer: Peer, updates: list[bytes], origin: object) -> None:
        """Applies a guarded commit's updates, judged whole by `_check_commit` already."""
        for update in updates:
            self._origin = (peer, update)
            try:
                self.replica.apply_update(update, origin=origin, trusted=True)
            finally:
                self._origin = None

    def _receive_awareness(self, peer: Peer, data: bytes) -> None:
        entries = decode_awareness(data, max_state_bytes=self._config.max_awareness_bytes)
        # Stock y-websocket clients echo every presence change they receive; only entries this
        # connection may own (its own, or ones nobody holds) count against its presence rate.
        if any(
            e.client in peer.awareness_clients
            or e.client not in self.awareness
            or self.awareness[e.client].removed
            for e in entries
        ):
            exceeded = self._limits.awareness(peer.rate_key)
            if exceeded:
                raise RateLimited(f"presence refused: {exceeded}")
        accepted = []
        for entry in entries:
            current = self.awareness.get(entry.client)
            if (
                current is not None
                and not current.removed
                and entry.client not in peer.awareness_clients
            ):
                continue  # another connection's presence: not this peer's to change
            if current is not None and not (
                entry.clock > current.clock
                or (entry.clock == current.clock and entry.removed and not current.removed)
            ):
                continue  # stale
            if entry.removed:
                peer.awareness_clients.discard(entry.client)
            else:
                if (
                    entry.client not in peer.awareness_clients
                    and len(peer.awareness_clients) >= MAX_AWARENESS_CLIENTS_PER_PEER
                ):
                    raise InvalidMessage(
                        f"a connection may publish presence for at most "
                        f"{MAX_AWARENESS_CLIENTS_PER_PEER} client ids"
                    )
                peer.awareness_clients.add(entry.client)
            self.awareness[entry.client] = entry
            self.presence_seen[entry.client] = time.time()
            accepted.append(entry)
        if accepted:
            self._broadcast(self._awareness_message(accepted), exclude=peer)
            if self._cluster is not None:
                self._cluster.publish_presence(self.name, encode_awareness(accepted))

    # -- presence relayed between hubs (with a cluster) -------------------------------------

    def apply_presence(self, hub: bytes, data: bytes) -> None:
        """Presence changes of another hub's clients: taken unless a client here owns the id."""
        try:
            entries = decode_awareness(data, max_state_bytes=self._config.max_awareness_bytes)
        except CrdtdocError as exc:
            log.warning(
                "bad presence from another hub", extra={"room": self.name, "error": str(exc)}
            )
            return
        local = self._local_awareness_clients()
        accepted = []
        now = time.monotonic()
        for entry in entries:
            current = self.awareness.get(entry.client)
            if entry.client in local:
                continue
            if current is not None and not (
                entry.clock > current.clock
                or (entry.clock == current.clock and entry.removed and not current.removed)
            ):
                if current.clock == entry.clock and not entry.removed:
                    self._remote_presence[entry.client] = now  # a renewal we already had
                continue
            self.awareness[entry.client] = entry
            self.presence_seen[entry.client] = time.time()
            if entry.removed:
                self._remote_presence.pop(entry.client, None)
            else:
                self._remote_presence[entry.client] = now
            accepted.append(entry)
        if accepted:
            self._broadcast(self._awareness_message(accepted))

    def local_presence(self) -> bytes | None:
        """The presence of this hub's own clients, encoded (None if nobody is present)."""
        local = self._local_awareness_clients()
        mine = [e for e in self._present() if e.client in local]
        return encode_awareness(mine) if mine else None

    def expire_remote_presence(self, now: float, timeout: float) -> None:
        """Removes presence another hub stopped renewing (it died, or lost its clients)."""
        gone = []
        for client, heard in list(self._remote_presence.items()):
            entry = self.awareness.get(client)
            if now - heard <= timeout or entry is None:
                continue
            del self._remote_presence[client]
            if not entry.removed:
                gone.append(AwarenessEntry(client, entry.clock + 1, "null"))
                self.awareness[client] = gone[-1]
        if gone:
            self._broadcast(self._awareness_message(gone))

    def _local_awareness_clients(self) -> set[int]:
        return {client for peer in self.peers for client in peer.awareness_clients}

    def _present(self) -> list[AwarenessEntry]:
        return [e for e in self.awareness.values() if not e.removed]

    @staticmethod
    def _awareness_message(entries: list[AwarenessEntry]) -> bytes:
        return encode_message(Awareness(encode_awareness(entries)))

    def _resync_messages(self, peer: Peer) -> list[bytes]:
        """What a peer whose queue was dropped needs: the whole state, presence, durability."""
        messages = [encode_message(SyncUpdate(self.replica.encode_update()))]
        if self._present():
            messages.append(self._awareness_message(self._present()))
        if peer.extensions:
            messages.append(encode_message(encode_extension(Durable(self.durable))))
        return messages

    def _broadcast(self, message: bytes, exclude: Peer | None = None) -> None:
        for peer in self.peers:
            if peer is not exclude:
                peer.send(message)

    # -- commits and durability ------------------------------------------------------------

    def _on_commit(self, update: bytes, local: bool) -> None:
        """The replica committed `update`: log it, fan it out (encoded once), maybe compact."""
        if self._cluster is not None and self.replica.commit_origin is FROM_LOG:
            self._committer.touch(self.name, self._taken)  # stored already: durable now
            if AGENTS_ROOT.encode() in update:  # bind ids registered through other hubs
                for client, agent in self.replica.agents().items():
                    self.owners.setdefault(client, agent)
        else:
            self._seq += 1
            if self._undurable_since is None:
                self._undurable_since = time.monotonic()
            self._committer.append(self.name, self._seq, update, self._taken)
        self._log_updates += 1
        self._log_bytes += len(update)
        self.size_bytes += len(update)
        if b"frozen" in update or ARTIFACTS_ROOT.encode() in update:
            self._frozen = None  # a spec may have been frozen (a cheap, conservative test)
        origin = self._origin
        exclude = origin[0] if origin is not None and origin[1] == update else None
        self._broadcast(encode_message(SyncUpdate(update)), exclude=exclude)
        if (
            self._log_updates >= self._config.compact_log_updates
            or self._log_bytes >= self._config.compact_log_bytes
        ):
            self.compact()

    def compact(self) -> None:
        """Replaces the log so far with a snapshot, in the background and atomically: queued
        behind this hub's appends on SQLite, a transaction of its own on PostgreSQL."""
        if self._log_updates == 0:
            return
        if self._cluster is not None:
            if not self._compacting:
                self._compacting = True
                asyncio.get_running_loop().create_task(self._compact_shared(self._cluster))
            return
        snapshot = self.replica.encode_update()
        if self.metrics is not None:
            self.metrics.compactions.inc()
        self._committer.compact(self.name, self._seq, snapshot, self._taken)
        self.size_bytes = len(snapshot)
        self._log_updates = 0
        self._log_bytes = 0

    async def _compact_shared(self, cluster: Cluster) -> None:
        """Compacts the shared log up to the last position this hub has applied without a gap.
        The snapshot may hold more (entries ahead, this hub's own unstored writes): replaying
        those later changes nothing. It must not hold less, so nothing may wait in the causal
        buffer. Two hubs never compact a room at once (`PostgresStore.compact`)."""
        try:
            seq = self.seqs.applied
            if seq <= self._snapshot_seq or self.replica.pending():
                return
            snapshot = self.replica.encode_update()
            if await cluster.store.compact(self.name, seq, snapshot) and self.metrics is not None:
                self.metrics.compactions.inc()
            # Done here or by another hub: either way the log up to `seq` is folded.
            self._snapshot_seq = max(self._snapshot_seq, seq)
            self.size_bytes = len(snapshot)
            self._log_updates = 0
            self._log_bytes = 0
        except StorageError as exc:
            log.warning("compaction failed", extra={"room": self.name, "error": str(exc)})
        finally:
            self._compacting = False

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
            self.replica.apply_update(data, parsed=parsed, origin=FROM_LOG, trusted=True)
        except CrdtdocError as exc:
            log.error(
                "a stored update was refused",
                extra={"room": self.name, "seq": seq, "error": str(exc)},
            )
        return True

    def apply_fetched(self, fetched: Fetched) -> None:
        """Applies what a catch-up read from the log: the snapshot, if any, then entries."""
        if fetched.snapshot is not None and fetched.snapshot_seq > self.seqs.applied:
            try:
                self.replica.apply_update(fetched.snapshot, origin=FROM_LOG, trusted=True)
            except CrdtdocError as exc:
                log.error(
                    "a stored snapshot was refused", extra={"room": self.name, "error": str(exc)}
                )
                return
            self.seqs.skip_to(fetched.snapshot_seq)
            self._snapshot_seq = max(self._snapshot_seq, fetched.snapshot_seq)
        for seq, data in fetched.entries:
            self.apply_stored(seq, data)

    def _taken(self) -> Callable[[], None]:
        """The store took this room's writes into a transaction: remember what they cover."""
        version, seq = self.replica.version(), self._seq
        since, self._undurable_since = self._undurable_since, None

        def durable() -> None:
            if since is not None and self.metrics is not None:
                self.metrics.durable_seconds.observe(time.monotonic() - since)
            self._durable_seq = max(self._durable_seq, seq)
            if self._durable_seq == self._seq:
                self._own_durable.set()
            self.durable = version
            self._announce_durable()

        return durable

    def _announce_durable(self) -> None:
        """Tells crdtdoc clients the durable version: at once, unless it was told less than an
        interval ago (`DURABLE_INTERVAL`, longer for large versions); then once, with the newest
        version, when the interval ends. A version carries the room's whole delete set, so
        under a stream of commits this bounds what acknowledgements cost (the trace benchmark
        spent most of its time on them)."""
        now = time.monotonic()
        wait = self._durable_told_at + self._durable_gap - now
        if wait > 0:
            if not self._durable_due:
                self._durable_due = True
                asyncio.get_running_loop().call_later(wait, self._tell_durable)
            return
        self._tell_durable()

    def _tell_durable(self) -> None:
        self._durable_due = False
        self._durable_told_at = time.monotonic()
        message = encode_message(encode_extension(Durable(self.durable)))
        self._durable_gap = max(DURABLE_INTERVAL, len(message) / DURABLE_BYTES_PER_SECOND)
        for peer in self.peers:
            if peer.extensions:
                peer.send(message)

    def drop_claim(self, task_list: str, task_id: str, agent: str) -> None:
        """Removes `agent`'s claim on a task (its claim lease expired), as the hub."""
        try:
            self.replica.tasks(task_list).drop_claim(task_id, agent)
        except CrdtdocError as exc:
            log.info("expired claim not dropped", extra={"room": self.name, "error": str(exc)})


@dataclass(frozen=True)
class _CommitRequest:
    """A guarded commit's arguments, checked (see PROTOCOL.md §10)."""

    id: int
    updates: list[bytes]
    client: int
    fence: tuple[str, int] | None
    expect: Version | None
    on: list[str]

    @staticmethod
    def parse(request: Request) -> _CommitRequest | Reply:
        """The checked arguments, or the reply refusing them."""
        args, rid = request.args, request.id
        updates = args.get("updates")
        client = args.get("client")
        if (
            not isinstance(updates, list)
            or not updates
            or not all(isinstance(u, bytes) for u in updates)
            or not isinstance(client, int)
        ):
            return Reply(rid, {}, "invalid", "commit needs updates (a list of bytes) and client")
        fence = args.get("fence")
        checked_fence = None
        if fence is not None:
            name, token = (
                (fence.get("name"), fence.get("token")) if isinstance(fence, dict) else (None, None)
            )
            if not isinstance(name, str) or not isinstance(token, int):
                return Reply(rid, {}, "invalid", "fence must be {name: str, token: int}")
            checked_fence = (name, token)
        expect = args.get("expect")
        since = None
        on = args.get("on") or []
        if expect is not None:
            if (
                not isinstance(expect, bytes)
                or not isinstance(on, list)
                or not all(isinstance(n, str) for n in on)
            ):
                return Reply(rid, {}, "invalid", "expect must be a version, on a list of names")
            try:
                since = Version.from_bytes(expect)
            except CrdtdocError as exc:
                return Reply(rid, {}, "invalid", f"expect is not a version: {exc}")
        return _CommitRequest(rid, updates, client, checked_fence, since, list(on))

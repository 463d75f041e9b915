"""Guarded commits: writes the hub applies only if nothing they depend on changed.

A commit request carries updates, the version its author read (`expect`), the artifacts that
read covered (`on`) and, optionally, a lease's fencing token. On one hub it is decided in one step
on the event loop; across hubs, inside a PostgreSQL transaction that holds the room's log, after
applying every entry other hubs stored (docs/SCALING.md says why that is linearizable). Either way
its updates pass the same gates as any other write, judged as one before anything is applied, so
a commit applies whole or not at all (PROTOCOL.md §10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from crdtdoc.errors import Forbidden, RemoteError, RoomFull, StorageError
from crdtdoc.protocol.extension import Reply, Request
from crdtdoc.protocol.requests import Commit, ReplyCode, RequestError
from crdtdoc.semantics import check_deletions, check_update, written_deletions
from crdtdoc.server.cluster import FROM_LOG
from crdtdoc.server.lease_tables import fence_refusal_in
from crdtdoc.server.peer import Peer
from crdtdoc.server.pgstore import append_in, fetch_in
from crdtdoc.updates import Item, ParsedUpdate, parse_update
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.replica import Replica
    from crdtdoc.server.cluster import Cluster, SeqTracker
    from crdtdoc.server.commit import GroupCommitter
    from crdtdoc.server.coordination import Coordinator
    from crdtdoc.server.limits import RateLimits
    from crdtdoc.server.pgstore import Fetched
    from crdtdoc.server.room_log import RoomLog
    from crdtdoc.server.write_gate import WriteGate


class CommittingRoom(Protocol):
    """What guarded commits read of their room, and `origin`, which they set while applying
    (a `crdtdoc.server.room.Room` is one)."""

    origin: tuple[Peer, bytes] | None

    @property
    def name(self) -> str: ...

    @property
    def replica(self) -> Replica: ...

    @property
    def gate(self) -> WriteGate: ...

    @property
    def limits(self) -> RateLimits: ...

    @property
    def coordinator(self) -> Coordinator: ...

    @property
    def committer(self) -> GroupCommitter: ...

    @property
    def cluster(self) -> Cluster | None: ...

    @property
    def log(self) -> RoomLog: ...

    @property
    def seqs(self) -> SeqTracker: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def fully_durable(self) -> bool: ...

    def taken(self) -> Callable[[], None]: ...

    def apply_fetched(self, fetched: Fetched) -> None: ...


log = logging.getLogger("crdtdoc.hub.room")

MAX_DESCRIBED = 100
"""Changes a conflict reply describes (it says how many there were in all): a reply stays small
however old the version a commit expected."""


class GuardedCommits:
    """The guarded commits of one room."""

    def __init__(self, room: CommittingRoom) -> None:
        self.room = room

    def commit(self, peer: Peer, request: Request) -> Reply:
        """A guarded commit, decided in one step on the hub's loop: applies the request's updates
        only if its fence is current and none of the artifacts `on` changed since `expect`
        (other than by the committer)."""
        room = self.room
        commit = self._admit(peer, request)
        if isinstance(commit, Reply):
            return commit
        if commit.fence is not None:
            why = room.coordinator.fence_refusal(room.name, *commit.fence, peer.agent)
            if why is not None:
                return Reply(commit.id, {}, ReplyCode.FENCED, why)
        try:
            refusal = self._check(peer, commit)
        except (Forbidden, RoomFull) as exc:
            return _refused(commit.id, exc)
        if refusal is not None:
            return refusal
        self._apply(peer, commit.updates, origin=None)
        return Reply(commit.id, {"applied": len(commit.updates)})

    async def commit_shared(self, peer: Peer, request: Request) -> Reply:
        """A guarded commit across hubs: decided inside a PostgreSQL transaction that locks the
        room's log, after applying every entry other hubs stored, and with the fencing token
        read under a share lock; the updates are stored in that same transaction. See
        docs/SCALING.md for why this is linearizable."""
        room = self.room
        commit = self._admit(peer, request)
        if isinstance(commit, Reply):
            return commit
        cluster = room.cluster
        if cluster is None:
            return self.commit(peer, request)
        # What this hub accepted before must be in the log first: the commit may build on it.
        while not room.fully_durable:
            room.log.own_durable.clear()
            await room.log.own_durable.wait()
        try:
            async with cluster.store.transaction(f"commit to room {room.name!r}") as db:
                cur = await db.execute(
                    "INSERT INTO crdtdoc_rooms AS r VALUES (%s, 0) ON CONFLICT (room) "
                    "DO UPDATE SET last_seq = r.last_seq RETURNING last_seq",
                    (room.name,),
                )  # locks the room's log until the transaction ends
                row = await cur.fetchone()
                if row is not None and row[0] > room.seqs.applied:
                    room.apply_fetched(await fetch_in(db, room.name, room.seqs.applied))
                if commit.fence is not None:
                    why = await fence_refusal_in(db, room.name, *commit.fence, peer.agent)
                    if why is not None:
                        return Reply(commit.id, {}, ReplyCode.FENCED, why)
                try:
                    refusal = self._check(peer, commit)
                except (Forbidden, RoomFull) as exc:
                    return _refused(commit.id, exc)
                except RemoteError as exc:
                    peer.close_soon(exc.close_code, str(exc))
                    return Reply(commit.id, {}, ReplyCode.INVALID, str(exc))
                if refusal is not None:
                    return refusal
                seqs = await append_in(db, [(room.name, u) for u in commit.updates])
        except StorageError as exc:
            log.error("guarded commit failed", extra={"room": room.name, "error": str(exc)})
            return Reply(commit.id, {}, ReplyCode.UNAVAILABLE, "the hub's database failed; retry")
        for seq, update in zip(seqs, commit.updates, strict=True):
            room.seqs.add(seq)
            cluster.publish(room.name, seq, update)
        self._apply(peer, commit.updates, origin=FROM_LOG)
        room.committer.touch(room.name, room.taken)  # acknowledge it with the next commit
        return Reply(commit.id, {"applied": len(commit.updates)})

    def _admit(self, peer: Peer, request: Request) -> CommitRequest | Reply:
        """The commit's checked arguments, or its refusal before any of it is parsed: from a
        read-only token, with more than `MAX_COMMIT_UPDATES` updates, or past the sender's
        update and byte rates (a commit is judged on the hub's loop, so it is charged as the
        sync updates it stands for are)."""
        if peer.grant is not None and peer.grant.read_only:
            return Reply(
                request.id, {}, ReplyCode.FORBIDDEN, "this token is read-only: writes are refused"
            )
        commit = CommitRequest.parse(request)
        if isinstance(commit, Reply):
            return commit
        exceeded = self.room.limits.update(peer.rate_key, sum(map(len, commit.updates)))
        if exceeded:
            return Reply(commit.id, {}, ReplyCode.RATE_LIMITED, f"commit refused: {exceeded}")
        return commit

    def _check(self, peer: Peer, commit: CommitRequest) -> Reply | None:
        """The refusal of a guarded commit (stale `expect`, missing dependencies), or None.
        Raises `RemoteError` for updates the peer may not write at all."""
        room = self.room
        if commit.expect is not None:
            clocks, deleted = room.replica.applied()  # live, not copied: only compared
            if commit.expect.compare(Version(clocks, deleted)) not in ("equal", "after"):
                # Telling what changed since reads the whole document: charged as a struct per
                # id it holds, so an old `expect` sent again and again waits out its debt
                # instead of taking the hub's loop from everyone.
                room.limits.structs(peer.rate_key, sum(clocks.values()))
            stale = room.replica.changes_by_others(commit.expect, commit.on, commit.client)
            if stale:
                described = [c.describe() for c in stale[:MAX_DESCRIBED]]
                return Reply(
                    commit.id,
                    {"changes": described, "count": len(stale)},
                    ReplyCode.CONFLICT,
                    f"{len(stale)} change(s) since the expected version: "
                    + "; ".join(described[:10]),
                )
        before = dict(room.replica.applied()[0])
        state = dict(before)
        ends: dict[int, int] = {}  # what the commit's earlier updates carry, per client
        items: list[Item] = []
        deletions: list[tuple[bytes, ParsedUpdate]] = []
        for update in commit.updates:
            parsed = parse_update(update, details=True)
            ranges = max(parsed.delete_set.range_count(), (parsed.size - parsed.ds_offset) // 4)
            room.limits.structs(peer.rate_key, parsed.count + ranges)  # judged: charged
            # raises for invalid or forbidden updates
            parsed = room.gate.authorize(peer, update, room.size_bytes, parsed)
            if any(s.start < ends.get(c, 0) for c, s in parsed.structs.items()):
                # Judged as one, applied in order: two versions of one id would be judged
                # as one and applied as the other.
                return Reply(commit.id, {}, ReplyCode.INVALID, "the commit's updates overlap")
            for c, structs in parsed.structs.items():
                ends[c] = max(ends.get(c, 0), structs.end)
            if parsed.missing(state):
                return Reply(
                    commit.id,
                    {},
                    ReplyCode.MISSING,
                    "the hub lacks data this commit builds on; let the replica sync, then retry",
                )
            for c, structs in parsed.structs.items():
                state[c] = max(state.get(c, 0), structs.end)
            if parsed.delete_set.clip_to(state) != parsed.delete_set:
                # Deletions of ids the hub lacks would wait, applied as trusted, never judged.
                return Reply(
                    commit.id,
                    {},
                    ReplyCode.MISSING,
                    "the commit deletes ids the hub lacks; let the replica sync, then retry",
                )
            items.extend(parsed.items or [])
            deletions.append((update, parsed))
        # Every item and deletion is judged now, as one update, so the commit applies whole or
        # not at all (the updates are then applied as trusted).
        index, deleted = room.replica.item_index(), room.replica.applied()[1]
        locator = check_update(index, items, before, deleted)
        for update, parsed in deletions:
            check_deletions(index, written_deletions(update, parsed), items, before, deleted)
        room.gate.judge(items, locator, before, peer)
        return None

    def _apply(self, peer: Peer, updates: Sequence[bytes], origin: object) -> None:
        """Applies a guarded commit's updates, judged whole by `_check_commit` already."""
        room = self.room
        for update in updates:
            room.origin = (peer, update)
            try:
                room.replica.apply_update(update, origin=origin, trusted=True)
            finally:
                room.origin = None


@dataclass(frozen=True)
class CommitRequest(Commit):
    """A guarded commit's arguments, read and bounded (`Commit`), with its request's id."""

    id: int = field(kw_only=True)

    @staticmethod
    def parse(request: Request) -> CommitRequest | Reply:
        """The checked arguments, or the reply refusing them."""
        try:
            commit = Commit.from_args(request.args)
        except RequestError as exc:
            return Reply(request.id, {}, exc.code, str(exc))
        return CommitRequest(**vars(commit), id=request.id)


def _refused(request_id: int, exc: Forbidden | RoomFull) -> Reply:
    """A commit the caller may not make (a read-only token, another agent's client id, a full
    room): answered, not closed over, since nothing was applied and the request can say why."""
    code = ReplyCode.FORBIDDEN if isinstance(exc, Forbidden) else ReplyCode.FULL
    return Reply(request_id, {}, code, str(exc))

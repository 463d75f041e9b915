"""`ProvenanceRecorder`: what the hub records, with each run of a link's writes, of what the
writer can have seen (`crdtdoc.provenance` says what a record means and how rows are chained).

The room tells the recorder of every commit (`committed`). A write that arrived on a link gets a
row; the next write of the same link extends that row when nothing but that client's own writes
was committed in between (its writer can have seen nothing new), so a run of keystrokes costs one
row. Rows go to the store with the update they describe, in the same transaction
(`crdtdoc.server.commit.Append.records`), so a durable write always has its row. Rows are kept
apart from the log: compaction folds the log, not the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Hashable, Mapping
from typing import Protocol

from crdtdoc.errors import StorageError
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import ReadProvenance, ReplyCode, RequestError
from crdtdoc.provenance import (
    ANNOUNCED,
    ANNOUNCED_FULL,
    DELTA,
    FULL,
    FULL_EVERY,
    MAX_LAGGING,
    StoredRecord,
)
from crdtdoc.replica import Replica
from crdtdoc.server.cluster import FROM_LOG
from crdtdoc.server.commit import GroupCommitter
from crdtdoc.server.peer import Peer
from crdtdoc.updates import encode_state_vector


class OwnWrites(Protocol):
    """Whether a room's own writes are stored (`crdtdoc.server.room_log.RoomLog` says)."""

    @property
    def fully_durable(self) -> bool: ...

    @property
    def own_durable(self) -> asyncio.Event: ...


MAX_REPLY_BYTES = 256 * 1024
"""About the most an answer to `ReadProvenance` carries; the asker reads on for the rest."""
MAX_OFFLINE_ROWS = 16
"""A link's offline work makes at most this many rows (its writes are extended into them while
nobody else writes; past that, they are recorded as made while connected: an upper bound)."""
DURABLE_WAIT_SECONDS = 2.0
"""How long an answer waits for the room's own writes to be stored, so that it holds the rows
of every write the asker could have seen acknowledged (it answers with what is stored then)."""


class ProvenanceRecorder:
    """One room's recorder on one hub process (see the module docstring)."""

    def __init__(self, wall: Callable[[], float], hub: str | None = None) -> None:
        self.hub = hub or secrets.token_hex(8)  # this process's chain in the room
        self._wall = wall
        self._n = 0  # rows made
        self._commits = 0
        self._streak: tuple[int, int] | None = None  # (client, first commit of its streak)
        self._open: dict[Hashable, tuple[StoredRecord, int]] = {}  # link -> (row, last commit)
        self._advanced: dict[int, int] = {}  # clients advanced since the chain's last row
        self._full_due = True  # the next chained row holds the whole state vector
        self._since_full = 0
        self._offline_rows: dict[Hashable, int] = {}  # link -> its offline rows (capped)

    def of_commit(
        self, replica: Replica, applying: tuple[Peer, bytes] | None
    ) -> tuple[StoredRecord, ...]:
        """`committed`, told by the room's replica while it announces a commit: the writer is
        the link the update came on, or the sender of the guarded commit being `applying`;
        nobody's for what came from another hub (`FROM_LOG`: that hub records it)."""
        origin = replica.commit_origin
        writer = origin if isinstance(origin, Peer) else None
        if writer is None and origin is not FROM_LOG and applying is not None:
            writer = applying[0]
        offline = writer.offline_state() if writer is not None else None
        return tuple(self.committed(writer, replica.commit_fresh, replica.applied()[0], offline))

    def committed(
        self,
        writer: Hashable | None,
        fresh: Mapping[int, tuple[int, int]] | None,
        state: Mapping[int, int],
        offline: Mapping[int, int] | None = None,
    ) -> list[StoredRecord]:
        """The room committed an update: the rows to store with it (new or extended). `writer`
        is the link it came on (None: not a link's: the hub's own, or another hub's); `fresh`
        the ids it added, by client (None: not known, a local commit); `state` the room's state
        vector after it; `offline` the state vector the link announced when it connected, while
        its writes may still be work made before (`Peer.offline_state`)."""
        self._commits += 1
        commit = self._commits
        if fresh is None:  # a local commit: which clients advanced is not known
            self._full_due, self._streak = True, None
            return []
        if not fresh:  # deletions only, or ids re-sent: the state vector did not move
            return []
        single = next(iter(fresh)) if len(fresh) == 1 else None
        if single is None or self._streak is None or self._streak[0] != single:
            self._streak = (single, commit) if single is not None else None
        for client, (_, end) in fresh.items():
            self._advanced[client] = max(self._advanced.get(client, 0), end)
        if writer is None:
            return []
        rows = []
        for client, (start, end) in fresh.items():
            before = offline.get(client, 0) if offline else 0
            if start < before and self._offline_rows.get(writer, 0) < MAX_OFFLINE_ROWS:
                # work made before the link connected: what the link lagged behind in is
                # worked out only for a new row (an extended one lagged behind in the same)
                cut = min(end, before)
                row = self._extended(writer, client, start, cut, commit, True)
                if row is None and (lagging := _lagging(offline, state, client)) is not None:
                    row = self._new_row(writer, client, start, cut, state, commit, lagging)
                if row is not None:
                    rows.append(row)
                    start = cut
            if start < end:
                row = self._extended(writer, client, start, end, commit, False)
                rows.append(row or self._new_row(writer, client, start, end, state, commit, None))
        return rows

    def _extended(
        self, writer: Hashable, client: int, start: int, end: int, commit: int, offline: bool
    ) -> StoredRecord | None:
        """The writer's open row extended to `end`, when only its client wrote since and it is
        as much offline work as the write; None otherwise."""
        opened = self._open.get(writer)
        if opened is None:
            return None
        row, last = opened
        streak = self._streak
        if (
            row.client != client
            or row.end != start
            or (row.kind in (ANNOUNCED, ANNOUNCED_FULL)) != offline
            or streak is None
            or streak[0] != client
            or streak[1] > last + 1
        ):
            return None
        row = row._replace(end=end)
        self._open[writer] = (row, commit)
        return row

    def _new_row(
        self,
        writer: Hashable,
        client: int,
        start: int,
        end: int,
        state: Mapping[int, int],
        commit: int,
        lagging: dict[int, int] | None,
    ) -> StoredRecord:
        """A new row for a write, which the writer's next writes may extend."""
        row = self._chained(client, start, end, state, lagging)
        if lagging is not None:
            self._offline_rows[writer] = self._offline_rows.get(writer, 0) + 1
        self._open[writer] = (row, commit)
        return row

    def _chained(
        self,
        client: int,
        start: int,
        end: int,
        state: Mapping[int, int],
        lagging: dict[int, int] | None,
    ) -> StoredRecord:
        """A new row in the chain: the room's state (whole, or what advanced since the row
        before), and for offline work what its link lagged behind in (`lagging`)."""
        if self._full_due or self._since_full >= FULL_EVERY:
            chain, kind = dict(state), FULL
            self._full_due, self._since_full = False, 0
        else:
            chain = {c: state.get(c, clock) for c, clock in self._advanced.items()}
            kind = DELTA
        self._since_full += 1
        self._advanced = {}
        seen = encode_state_vector(chain)
        if lagging is not None:
            kind = ANNOUNCED_FULL if kind == FULL else ANNOUNCED
            seen += encode_state_vector(lagging)
        self._n += 1
        return StoredRecord(self.hub, self._n, client, start, end, seen, kind, self._wall())

    def forget(self, writer: Hashable) -> None:
        """`writer`'s link closed: its next write (on a new link) starts a new row."""
        self._open.pop(writer, None)
        self._offline_rows.pop(writer, None)

    def whole_next(self) -> None:
        """The next row holds the whole state vector (a horizon may have let go of the rows
        this chain's next ones would build on)."""
        self._full_due = True


def _lagging(
    offline: Mapping[int, int] | None, state: Mapping[int, int], writer: int
) -> dict[int, int] | None:
    """What a link that announced `offline` lacked of the room's `state` (other clients than
    the writer's): the clocks it had of the clients it lagged behind in. None when that is more
    than `MAX_LAGGING` clients: the write is then recorded as made while connected (the room's
    state: an upper bound too), so that no link makes a row of more than a few KB."""
    if offline is None:
        return None
    lagging = {}
    for client, clock in state.items():
        had = offline.get(client, 0)
        if had < clock and client != writer:
            lagging[client] = had
            if len(lagging) > MAX_LAGGING:
                return None
    return lagging


async def read_rows(
    committer: GroupCommitter,
    room: str,
    log: OwnWrites,
    request_id: int,
    args: object,
    charge: Callable[[int], object] = lambda size: None,
) -> Reply:
    """The answer to a `ReadProvenance` request for `room`: its stored rows, read once the
    room's own writes so far are stored (its `log` says), or after `DURABLE_WAIT_SECONDS`;
    what it sends is `charge`d to the asker (its byte budget, as a sync answer is)."""
    try:
        asked = ReadProvenance.from_args(args if isinstance(args, dict) else {})
    except RequestError as exc:
        return Reply(request_id, {}, exc.code, str(exc))
    if not log.fully_durable:
        log.own_durable.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(log.own_durable.wait(), DURABLE_WAIT_SECONDS)
    try:
        rows, more = await committer.provenance(room, asked.after, asked.limit, MAX_REPLY_BYTES)
    except StorageError as exc:
        return Reply(request_id, {}, ReplyCode.UNAVAILABLE, f"cannot read provenance: {exc}")
    charge(sum(row.size for row in rows))
    return Reply(request_id, {"rows": [r.to_wire() for r in rows], "more": more})

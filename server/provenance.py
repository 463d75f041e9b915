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
from dataclasses import replace
from typing import TYPE_CHECKING

from crdtdoc.errors import StorageError
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import ReadProvenance, ReplyCode, RequestError
from crdtdoc.provenance import ANNOUNCED, DELTA, FULL, FULL_EVERY, StoredRecord
from crdtdoc.replica import Replica
from crdtdoc.server.commit import GroupCommitter
from crdtdoc.server.peer import Peer
from crdtdoc.updates import ClientStructs, encode_state_vector

if TYPE_CHECKING:
    from crdtdoc.server.room_log import RoomLog

MAX_REPLY_BYTES = 256 * 1024
"""About the most an answer to `ReadProvenance` carries; the asker reads on for the rest."""
DURABLE_WAIT_SECONDS = 2.0
"""How long an answer waits for the room's own writes to be stored, so that it holds the rows
of every write the asker could have seen acknowledged (it answers with what is stored then)."""


class ProvenanceRecorder:
    """One room's recorder on one hub process (see the module docstring)."""

    def __init__(self, wall: Callable[[], float], hub: str | None = None) -> None:
        self.hub = hub or secrets.token_hex(4)  # this process's chain in the room
        self._wall = wall
        self._n = 0  # rows made
        self._commits = 0
        self._streak: tuple[int, int] | None = None  # (client, first commit of its streak)
        self._open: dict[Hashable, tuple[StoredRecord, int]] = {}  # link -> (row, last commit)
        self._advanced: dict[int, int] = {}  # clients advanced since the chain's last row
        self._full_due = True  # the next chained row holds the whole state vector
        self._since_full = 0
        self._recorded: dict[int, int] = {}  # client -> end of its writes recorded

    def of_commit(
        self, replica: Replica, applying: tuple[Peer, bytes] | None
    ) -> tuple[StoredRecord, ...]:
        """`committed`, told by the room's replica while it announces a commit: the writer is
        the link the update came on, or the sender of the guarded commit being `applying`."""
        writer = replica.commit_origin
        if not isinstance(writer, Peer):
            writer = applying[0] if applying is not None else None
        announced = writer.announced if writer is not None else None
        return tuple(
            self.committed(writer, replica.commit_structs, replica.applied()[0], announced)
        )

    def committed(
        self,
        writer: Hashable | None,
        structs: Mapping[int, ClientStructs] | None,
        state: Mapping[int, int],
        announced: Mapping[int, int] | None = None,
    ) -> list[StoredRecord]:
        """The room committed an update: the rows to store with it (new or extended). `writer`
        is the link it came on (None: not a link's: the hub's own, or another hub's); `structs`
        what it carries by client (None: not known, a local commit); `state` the room's state
        vector after it; `announced` the state vector the link announced when it connected."""
        self._commits += 1
        commit = self._commits
        if structs is None:  # a local commit: which clients advanced is not known
            self._full_due, self._streak = True, None
            return []
        if not structs:  # deletions only: the state vector did not move
            return []
        single = next(iter(structs)) if len(structs) == 1 else None
        if single is None or self._streak is None or self._streak[0] != single:
            self._streak = (single, commit) if single is not None else None
        for client, s in structs.items():
            self._advanced[client] = max(self._advanced.get(client, 0), s.end)
        if writer is None:
            return []
        rows = []
        for client, s in structs.items():
            start = max(s.start, self._recorded.get(client, 0))
            if start >= s.end:
                continue  # re-sent: recorded already
            self._recorded[client] = s.end
            before = announced.get(client, 0) if announced else 0
            if start < before and announced:  # written before the link connected
                end = min(s.end, before)
                # clients the room has never seen say nothing: not kept (a link may announce
                # up to 64 KiB of them)
                said = {c: k for c, k in announced.items() if c in state}
                rows.append(self._row(client, start, end, said, ANNOUNCED))
                start = end
            if start < s.end:
                rows.append(self._connected(writer, client, start, s.end, state, commit))
        return rows

    def _connected(
        self,
        writer: Hashable,
        client: int,
        start: int,
        end: int,
        state: Mapping[int, int],
        commit: int,
    ) -> StoredRecord:
        """The row of a write made while connected: the writer's open row, extended, when only
        its client wrote since; else a new row in the chain."""
        opened = self._open.get(writer)
        if opened is not None:
            row, last = opened
            streak = self._streak
            if (
                row.client == client
                and row.end == start
                and streak is not None
                and streak[0] == client
                and streak[1] <= last + 1
            ):
                row = replace(row, end=end)
                self._open[writer] = (row, commit)
                return row
        if self._full_due or self._since_full >= FULL_EVERY:
            seen, kind = dict(state), FULL
            self._full_due, self._since_full = False, 0
        else:
            seen, kind = {c: state.get(c, clock) for c, clock in self._advanced.items()}, DELTA
        self._since_full += 1
        self._advanced = {}
        row = self._row(client, start, end, seen, kind)
        self._open[writer] = (row, commit)
        return row

    def _row(
        self, client: int, start: int, end: int, seen: dict[int, int], kind: int
    ) -> StoredRecord:
        self._n += 1
        return StoredRecord(
            self.hub, self._n, client, start, end, encode_state_vector(seen), kind, self._wall()
        )

    def forget(self, writer: Hashable) -> None:
        """`writer`'s link closed: its next write (on a new link) starts a new row."""
        self._open.pop(writer, None)


async def read_rows(
    committer: GroupCommitter, room: str, log: RoomLog, request_id: int, args: object
) -> Reply:
    """The answer to a `ReadProvenance` request for `room`: its stored rows, read once the
    room's own writes so far are stored (its `log` says), or after `DURABLE_WAIT_SECONDS`."""
    try:
        asked = ReadProvenance.from_args(args if isinstance(args, dict) else {})
    except RequestError as exc:
        return Reply(request_id, {}, exc.code, str(exc))
    if not log.fully_durable:
        log.own_durable.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(log.own_durable.wait(), DURABLE_WAIT_SECONDS)
    try:
        rows = await committer.provenance(room, asked.after, asked.limit + 1)
    except StorageError as exc:
        return Reply(request_id, {}, ReplyCode.UNAVAILABLE, f"cannot read provenance: {exc}")
    more = len(rows) > asked.limit
    rows = rows[: asked.limit]
    size = 0
    for count, row in enumerate(rows):  # whole state vectors may be large: a bounded answer
        size += len(row.seen) + 64
        if size > MAX_REPLY_BYTES and count:
            rows, more = rows[:count], True
            break
    return Reply(request_id, {"rows": [r.to_wire() for r in rows], "more": more})

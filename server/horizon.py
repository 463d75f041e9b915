"""`HistoryHorizon`: how a hub keeping history (`crdtdoc serve --history-horizon`) lets the past
go once it is older than the horizon.

The document does not say when anything was deleted, so the hub notes *marks*: the room's version
(state vector and delete set) at a compaction, kept in the store with the snapshot, at most
`MARKS_PER_HORIZON` per horizon. At each compaction, the newest mark older than the horizon says
what had been deleted by then: the room's replica collects that content (`Replica.forget_past`)
before the snapshot is taken, so the store, the hub's memory and every new client's first sync
lose it, and every version from that mark on can still be read. Older marks, and provenance rows
older than the horizon, are let go in the same transaction. So the past stays readable for at
least the horizon, and at most the horizon plus the time between two marks (and two compactions:
a room nobody writes to keeps what it holds).
"""

from __future__ import annotations

import logging

from crdtdoc.errors import CrdtdocError
from crdtdoc.replica import Replica
from crdtdoc.server.commit import HorizonWrite
from crdtdoc.versions import Version

log = logging.getLogger("crdtdoc.hub.room")

MARKS_PER_HORIZON = 16
"""A new mark is noted once the newest is older than this part of the horizon."""


class HistoryHorizon:
    """One room's marks and what its compactions collect (see the module docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.marks: list[tuple[float, Version]] = []  # (Unix time, the room's version), by time
        self._collected: float | None = None  # the mark whose deletions were collected last

    def restore(self, room: str, marks: list[tuple[float, bytes]]) -> None:
        """Takes up the marks the store kept (a damaged one is skipped: it only delays what
        is collected)."""
        for at, data in marks:
            try:
                self.marks.append((at, Version.from_bytes(data)))
            except CrdtdocError as exc:
                log.warning("damaged history mark", extra={"room": room, "error": str(exc)})

    def at_compaction(self, replica: Replica, now: float) -> HorizonWrite:
        """Collects what the newest mark older than the horizon had deleted (once per mark),
        notes a new mark when one is due, and says what the store keeps."""
        cutoff = now - self.seconds
        self.marks.sort(key=lambda mark: mark[0])  # hubs' clocks may disagree: kept in order
        passed = sum(1 for at, _ in self.marks if at <= cutoff)
        if passed:
            at, version = self.marks[passed - 1]
            if at != self._collected:
                replica.forget_past(version)
                self._collected = at
            del self.marks[: passed - 1]
        mark = None
        if not self.marks or now - self.marks[-1][0] >= self.seconds / MARKS_PER_HORIZON:
            version = replica.version()
            self.marks.append((now, version))
            mark = (now, version.to_bytes())
        return HorizonWrite(mark, self.marks[0][0], cutoff)

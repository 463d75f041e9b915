"""What the hub recorded of each write: the most its writer can have seen when it wrote.

The document records what a write refers to, not what its writer had read. The hub knows more:
everything it committed was queued to every link, so a write that arrives on a link can only have
been made by a writer that had been sent, at most, what the room held then. The hub records that
with each run of a client's writes, as *provenance records*:

- a write made while its link was connected: `seen` is the room's state vector when the write was
  committed. Its writer cannot have read anything beyond it, so "not seen" is exact; "seen" says
  only that the writer had been sent it (it may not have read it): an upper bound;
- a write made before its link connected (offline work, sent when the link opened; told by its
  clock, below the state vector the link announced in its sync step 1): `seen` is that announced
  state vector, the writer's own word (`announced`).

Records are stored as rows (`StoredRecord`), chained per hub process: a row holds the clients
that advanced since the previous row of its chain (`DELTA`), the whole state vector (`FULL`,
where a chain starts, and every `FULL_EVERY` rows so that a chain whose older rows were pruned
is known again soon), or the announced state vector (`ANNOUNCED`, outside the chain). So a row
costs a few bytes however many clients the room has. `records_from_rows` rebuilds the records; a
row whose chain lost its start has `seen` None: not known, and `Provenance` reads it as no
record.

This module does no I/O; the hub's recorder is `crdtdoc.server.provenance`, the request that
reads the rows `crdtdoc.protocol.requests.ReadProvenance`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crdtdoc.errors import CrdtdocError, InvalidMessage
from crdtdoc.updates import decode_state_vector

DELTA, FULL, ANNOUNCED = 0, 1, 2
"""Row kinds: clients advanced since the chain's previous row; a whole state vector; the state
vector a link announced (offline work, outside the chain)."""
FULL_EVERY = 1000
"""A chain stores the whole state vector at least every this many rows."""
MAX_ROWS_PER_REPLY = 1000
"""Most rows one `ReadProvenance` answer carries (the client asks again for more)."""
MAX_HUB_TAG = 64
"""Longest hub tag a row may carry, in characters."""


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """`client`'s writes `[start, end)`, first received at `at` (Unix time), by a writer that had
    seen at most `seen` (a state vector) besides its own earlier writes; None: not known."""

    client: int
    start: int
    end: int
    seen: Mapping[int, int] | None
    at: float
    announced: bool  # made before its link connected: `seen` is what the link announced

    def may_have_seen(self, client: int, clock: int) -> bool:
        """Whether the writer may have seen id `client:clock` when it wrote: it had been sent
        it (or announced it), or the record does not know (`seen` None). False is exact."""
        if client == self.client:
            return clock < self.start
        return self.seen is None or self.seen.get(client, 0) > clock


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One provenance row as stored and sent: row `n` of hub process `hub`'s chain in a room."""

    hub: str
    n: int
    client: int
    start: int
    end: int
    seen: bytes  # an encoded state vector (all of it, or the clients advanced: see `kind`)
    kind: int
    at: float

    @classmethod
    def from_columns(cls, row: Sequence[Any]) -> StoredRecord:
        """A row as a store reads it: (hub, n, client, start, end, seen, kind, at)."""
        hub, n, client, start, end, seen, kind, at = row
        ints = int(n), int(client), int(start), int(end)
        return cls(str(hub), *ints, bytes(seen), int(kind), float(at))

    def to_wire(self) -> list[object]:
        return [self.hub, self.n, self.client, self.start, self.end, self.seen, self.kind, self.at]

    @classmethod
    def from_wire(cls, value: object) -> StoredRecord:
        """A row as a hub sent it; `InvalidMessage` for anything else."""
        if not isinstance(value, list) or len(value) != 8:
            raise InvalidMessage("a provenance row is a list of 8 fields")
        hub, n, client, start, end, seen, kind, at = value
        ints = (n, client, start, end, kind)
        if (
            not isinstance(hub, str)
            or len(hub) > MAX_HUB_TAG
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ints)
            or not isinstance(seen, bytes)
            or kind not in (DELTA, FULL, ANNOUNCED)
            or not isinstance(at, (int, float))
            or isinstance(at, bool)
            or not math.isfinite(at)
            or not start < end
        ):
            raise InvalidMessage(f"malformed provenance row {value!r:.200}")
        try:
            decode_state_vector(seen)
        except CrdtdocError as exc:
            raise InvalidMessage(f"a provenance row's state vector is invalid: {exc}") from None
        return cls(hub, n, client, start, end, seen, kind, float(at))


def records_from_rows(rows: Iterable[StoredRecord]) -> list[WriteRecord]:
    """The records the rows describe (any order in, by hub and chain order out). A delta row
    whose chain has no full row before it (older rows were pruned) gets `seen` None."""
    records = []
    known: dict[int, int] | None = None
    hub: str | None = None
    for row in sorted(rows, key=lambda r: (r.hub, r.n)):
        if row.hub != hub:
            hub, known = row.hub, None
        state = decode_state_vector(row.seen)
        seen: Mapping[int, int] | None
        if row.kind == ANNOUNCED:
            seen = state
        else:
            if row.kind == FULL:
                known = state
            elif known is not None:
                known = {**known, **state}
            seen = known
        records.append(
            WriteRecord(row.client, row.start, row.end, seen, row.at, row.kind == ANNOUNCED)
        )
    return records


class Provenance:
    """The hub's records of a room, looked up by the id of a write. A record that does not know
    what its writer had seen (`seen` None: its chain's start was pruned) counts as none: such
    writes are judged from the document alone, as writes the hub never recorded are."""

    def __init__(self, records: Iterable[WriteRecord]) -> None:
        by_client: dict[int, list[WriteRecord]] = {}
        for record in records:
            if record.seen is not None:
                by_client.setdefault(record.client, []).append(record)
        self._by_client = {c: sorted(rs, key=lambda r: r.start) for c, rs in by_client.items()}
        self._starts = {c: [r.start for r in rs] for c, rs in self._by_client.items()}

    def __len__(self) -> int:
        return sum(len(rs) for rs in self._by_client.values())

    def record_of(self, client: int, clock: int) -> WriteRecord | None:
        """The record of the write with id `client:clock` (None: the hub recorded none: made
        through a hub that does not record, or by the hub itself, or before it recorded)."""
        found = self.overlapping(client, clock, clock + 1)
        return found[0] if found else None

    def overlapping(self, client: int, start: int, end: int) -> list[WriteRecord]:
        """The records of `client`'s writes that overlap clocks `[start, end)`, by clock."""
        starts = self._starts.get(client)
        if not starts:
            return []
        records = self._by_client[client]
        at = max(bisect.bisect_right(starts, start) - 1, 0)
        found = []
        while at < len(records) and records[at].start < end:
            if records[at].end > start:
                found.append(records[at])
            at += 1
        return found

    def may_have_seen(self, client: int, start: int, end: int, work: Mapping[int, int]) -> bool:
        """Whether `client`'s writes `[start, end)` may have been made by a writer that had
        seen some of `work` (client -> the first clock of the work): some record of them says
        so. False when no record covers them: then the hub does not know."""
        return any(
            record.may_have_seen(c, clock)
            for record in self.overlapping(client, start, end)
            for c, clock in work.items()
        )

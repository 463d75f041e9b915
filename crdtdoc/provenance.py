"""What the hub recorded of each write: the most its writer can have seen when it wrote.

The document records what a write refers to, not what its writer had read. The hub knows more:
everything it committed was queued to every link, so a write that arrives on a link can only have
been made by a writer that had been sent, at most, what the room held then. The hub records that
with each run of a client's writes, as *provenance records*:

- a write made while its link was connected: `seen` is the room's state vector when the write was
  committed. Its writer cannot have read anything beyond it, so "not seen" is exact; "seen" says
  only that the writer had been sent it (it may not have read it): an upper bound;
- a write made before its link connected (offline work: what a link sends up to its first sync
  step 2, the answer to the hub's step 1, below the clocks of the state vector its first step 1
  announced): `seen` is the room's state, lowered to what the link announced for the clients it
  lagged behind in, the writer's own word (`announced`). A link lagging behind in more than
  `MAX_LAGGING` clients is recorded as connected: an upper bound too.

Records are stored as rows (`StoredRecord`), chained per hub process: a row holds the clients
that advanced since the previous row of its chain (`DELTA`), or the whole state vector (`FULL`,
where a chain starts, and every `FULL_EVERY` rows so that a chain whose older rows were pruned
is known again soon); offline work's rows (`ANNOUNCED`, `ANNOUNCED_FULL`) add the clients their
link lagged behind in. So a row costs a few bytes however many clients the room has.
`records_from_rows` rebuilds the records; a row whose chain lost its start has `seen` None: not
known, and `Provenance` reads it as no record.

This module does no I/O; the hub's recorder is `crdtdoc.server.provenance`, the request that
reads the rows `crdtdoc.protocol.requests.ReadProvenance`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from crdtdoc.encoding import Decoder
from crdtdoc.errors import CrdtdocError, InvalidMessage, InvalidUpdate
from crdtdoc.updates import decode_state_vector, read_state_vector

DELTA, FULL, ANNOUNCED, ANNOUNCED_FULL = 0, 1, 2, 3
"""Row kinds: the clients advanced since the chain's previous row; the whole state vector; and
for offline work, either of those followed by a second state vector: the clients its link
lagged behind in when it connected, with the clocks it had of them."""
WHOLE = (FULL, ANNOUNCED_FULL)
"""Kinds whose (first) state vector is the whole room's."""
MAX_LAGGING = 256
"""Offline work whose link lagged behind in more clients than this is recorded as if made while
connected (an upper bound too): no row holds more than a few KB."""
FULL_EVERY = 1000
"""A chain stores the whole state vector at least every this many rows."""
MAX_ROWS_PER_REPLY = 1000
"""Most rows one `ReadProvenance` answer carries (the client asks again for more)."""
MAX_HUB_TAG = 64
"""Longest hub tag a row may carry, in characters (lowercase hex)."""


def is_hub_tag(value: object) -> bool:
    """Whether `value` can be a hub tag: lowercase hex, at most `MAX_HUB_TAG` characters."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_HUB_TAG
        and all(c in "0123456789abcdef" for c in value)
    )


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


class StoredRecord(NamedTuple):
    """One provenance row as stored and sent: row `n` of hub process `hub`'s chain in a room.
    (A named tuple: the hub makes or extends one per update, so it must be cheap to make.)"""

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

    @property
    def size(self) -> int:
        """About what the row costs to send, in bytes."""
        return len(self.seen) + len(self.hub) + 48

    def to_wire(self) -> list[object]:
        return list(self)

    @classmethod
    def from_wire(cls, value: object) -> StoredRecord:
        """A row as a hub sent it; `InvalidMessage` for anything else."""
        if not isinstance(value, list) or len(value) != 8:
            raise InvalidMessage("a provenance row is a list of 8 fields")
        hub, n, client, start, end, seen, kind, at = value
        ints = (n, client, start, end, kind)
        if any(isinstance(i, int) and i >= 2**64 for i in ints):
            raise InvalidMessage(f"a provenance row's numbers are out of range: {value!r:.200}")
        if (
            not is_hub_tag(hub)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ints)
            or not isinstance(seen, bytes)
            or kind not in (DELTA, FULL, ANNOUNCED, ANNOUNCED_FULL)
            or not isinstance(at, (int, float))
            or isinstance(at, bool)
            or not math.isfinite(at)
            or not start < end
        ):
            raise InvalidMessage(f"malformed provenance row {value!r:.200}")
        try:
            split_seen(seen, kind)
        except CrdtdocError as exc:
            raise InvalidMessage(f"a provenance row's state vector is invalid: {exc}") from None
        return cls(hub, n, client, start, end, seen, kind, float(at))


def prune_ranges(recent: bool, whole: int | None) -> list[tuple[int, int]]:
    """Which rows of one chain a horizon lets go (of those older than it), as ranges of row
    numbers: all of them when the chain has none within the horizon (it ended: a hub process
    that stopped); else those before its newest whole row older than the horizon, which the
    rows after it need (they hold only what changed); none if it has no such row."""
    if not recent:
        return [(0, 2**63 - 1)]
    return [(0, whole)] if whole is not None else []


def split_seen(seen: bytes, kind: int) -> tuple[dict[int, int], dict[int, int] | None]:
    """A row's `seen`: its chain state vector, and for offline work (`ANNOUNCED`,
    `ANNOUNCED_FULL`) the clients its link lagged behind in. Raises `InvalidUpdate`."""
    if kind not in (ANNOUNCED, ANNOUNCED_FULL):
        return decode_state_vector(seen), None
    dec = Decoder(bytes(seen), InvalidUpdate)
    chain, lagging = read_state_vector(dec), read_state_vector(dec)
    if not dec.at_end():
        raise dec.fail(f"{dec.remaining} trailing bytes after a provenance row's state vectors")
    return chain, lagging


class RowPage:
    """The rows one answer carries, as a store reads them: at most `limit`, and no more than
    about `max_bytes` (at least one). `take` says whether a row read fits; once one does not,
    more follow."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.rows: list[StoredRecord] = []
        self.more = False
        self._limit, self._left = limit, max_bytes

    def take(self, columns: Sequence[Any]) -> bool:
        """Adds the row a store read as `columns`, if it fits; False once the page is full."""
        row = StoredRecord.from_columns(columns)
        self._left -= row.size
        if len(self.rows) == self._limit or (self.rows and self._left < 0):
            self.more = True
            return False
        self.rows.append(row)
        return True


def records_from_rows(rows: Iterable[StoredRecord]) -> list[WriteRecord]:
    """The records the rows describe (any order in, by hub and chain order out). A row whose
    chain has no whole row before it (older rows were pruned) gets `seen` None."""
    records = []
    known: dict[int, int] | None = None
    hub: str | None = None
    for row in sorted(rows, key=lambda r: (r.hub, r.n)):
        if row.hub != hub:
            hub, known = row.hub, None
        chain, lagging = split_seen(row.seen, row.kind)
        if row.kind in WHOLE:
            known = chain
        elif known is not None:
            known = {**known, **chain}
        seen = known if known is None or lagging is None else {**known, **lagging}
        records.append(
            WriteRecord(row.client, row.start, row.end, seen, row.at, lagging is not None)
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
        # the highest end among each client's records up to each one (records of two hubs may
        # overlap: a lookup must see every one)
        self._reach = {
            c: list(itertools.accumulate((r.end for r in rs), max))
            for c, rs in self._by_client.items()
        }

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
        records, reach = self._by_client[client], self._reach[client]
        at = bisect.bisect_left(starts, end) - 1  # the last record starting before `end`
        found = []
        while at >= 0 and reach[at] > start:
            if records[at].end > start:
                found.append(records[at])
            at -= 1
        return found[::-1]

    def may_have_seen(self, client: int, start: int, end: int, work: Mapping[int, int]) -> bool:
        """Whether `client`'s writes `[start, end)` may have been made by a writer that had
        seen some of `work` (client -> the first clock of the work): some record of them says
        so. False when no record covers them: then the hub does not know."""
        return any(
            record.may_have_seen(c, clock)
            for record in self.overlapping(client, start, end)
            for c, clock in work.items()
        )

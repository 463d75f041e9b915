"""`CausalBuffer`: data that waits for what it builds on, each entry charged to whoever sent it.

A replica hands the engine an update only once every id it builds on is present; pycrdt would
otherwise keep it in a pending store nobody can see or bound. What cannot be applied yet waits
here: an update's structs, or deletions of ids not present yet. Each entry is filed under the last
id of the first range it lacks, so it is looked at again only once that whole range has arrived:
a backlog drains in O(n log n), and an update that arrives costs nothing per waiting entry.

Every entry is charged to a holder (`holder_of(origin)`; the hub charges the sender's identity)
for one entry and an estimate of the memory it takes. A holder past its share is refused with
`PendingLimitExceeded` while others carry on; the whole buffer has a cap too. Data the replica's
owner trusts (its own store, another hub's log) counts only against the whole. Entries older than
`max_age` can be dropped (`expire`): a dependency that never arrives must not hold memory, or
anything that waits for an empty buffer, for ever.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from crdtdoc.errors import PendingLimitExceeded
from crdtdoc.idset import IdSet
from crdtdoc.updates import ParsedUpdate

# Estimated bytes an entry takes beyond its data: the entry and its parse (one record per client
# the update carries or refers to, one per skipped or collected range, one per deleted range).
# tests/test_causal.py checks the estimate against tracemalloc.
_ENTRY_OVERHEAD = 900
_PER_CLIENT = 350
_PER_RANGE = 100


Shares = dict[Hashable, list[int]]
"""holder -> [entries, bytes charged, structs]: what each holder has waiting; one dict may be
shared by several buffers (a hub's rooms), so that a holder's share counts over all of them."""


@dataclass(frozen=True)
class BufferLimits:
    """Bounds on the buffer: for the whole of it, and for each holder's untrusted share."""

    max_updates: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_updates_per_holder: int = 10_000
    max_bytes_per_holder: int = 64 * 1024 * 1024
    max_structs_per_holder: int | None = None  # applying them at once, when they can, takes time


@dataclass(eq=False)
class Waiting:
    """One waiting entry: structs (`data`, `parsed`) or deletions (`deletes`), never both."""

    data: bytes
    parsed: ParsedUpdate | None  # None: the entry holds deletions only
    deletes: IdSet
    origin: object
    trusted: bool
    holder: Hashable
    since: float
    cost: int = 0
    structs: int = 0


def entry_cost(data: bytes, parsed: ParsedUpdate | None, deletes: IdSet) -> int:
    """The memory an entry is charged: its bytes plus an estimate of its parse."""
    cost = _ENTRY_OVERHEAD + len(data) + _PER_RANGE * deletes.range_count()
    if parsed is not None:
        cost += _PER_CLIENT * (len(parsed.structs) + len(parsed.references))
        for structs in parsed.structs.values():
            cost += _PER_RANGE * (len(structs.skips) + len(structs.gcs))
    return cost


def first_missing(missing: IdSet) -> tuple[int, int]:
    """(client, last clock) of the first range in `missing`: what an entry is filed under."""
    client, _, end = next(iter(missing))
    return client, end - 1


class CausalBuffer:
    """Waiting entries, filed by the id they wait for and charged to their holders."""

    def __init__(
        self,
        limits: BufferLimits,
        holder_of: Callable[[object], Hashable],
        clock: Callable[[], float],
        shares: Shares | None = None,
    ) -> None:
        self.limits = limits
        self.holder_of = holder_of
        self.clock = clock
        self._entries: dict[int, Waiting] = {}  # id(entry) -> entry
        self._filed: dict[int, list[tuple[int, int, Waiting]]] = {}  # client -> heap
        self.shares: Shares = {} if shares is None else shares
        self.cost = 0  # what all entries are charged

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def share(self, holder: Hashable) -> tuple[int, int]:
        """(entries, bytes charged) of one holder."""
        entries, cost, _ = self.shares.get(holder, (0, 0, 0))
        return entries, cost

    def hold(
        self,
        data: bytes,
        parsed: ParsedUpdate | None,
        deletes: IdSet,
        origin: object,
        trusted: bool,
        missing: IdSet,
    ) -> Waiting:
        """Adds an entry waiting for `missing`; raises `PendingLimitExceeded` past a bound."""
        holder = self.holder_of(origin)
        cost = entry_cost(data, parsed, deletes)
        limits = self.limits
        if len(self._entries) >= limits.max_updates or self.cost + cost > limits.max_bytes:
            raise PendingLimitExceeded(
                f"{len(self._entries)} updates ({self.cost} bytes) already wait for missing "
                "data; resync with a peer (sync step 1) to fetch it"
            )
        entries, charged, structs = self.shares.get(holder, (0, 0, 0))
        count = parsed.count if parsed is not None else 0
        if not trusted and (
            entries >= limits.max_updates_per_holder
            or charged + cost > limits.max_bytes_per_holder
            or structs + count > (limits.max_structs_per_holder or structs + count)
        ):
            raise PendingLimitExceeded(
                f"{entries} of this sender's updates ({charged} bytes, {structs} structs) "
                f"already wait for data nobody sent, and this one brings {count} structs; send "
                "what they build on first (sync step 1 asks for it)"
            )
        entry = Waiting(data, parsed, deletes, origin, trusted, holder, self.clock(), cost, count)
        self._entries[id(entry)] = entry
        share = self.shares.setdefault(holder, [0, 0, 0])
        share[0] += 1
        share[1] += cost
        share[2] += count
        self.cost += cost
        self.file(entry, missing)
        return entry

    def file(self, entry: Waiting, missing: IdSet) -> None:
        """Files `entry` (held) under the first range it still lacks."""
        client, clock = first_missing(missing)
        heapq.heappush(self._filed.setdefault(client, []), (clock, id(entry), entry))

    def due(self, client: int, clock: int) -> list[Waiting]:
        """The held entries filed under an id of `client` below `clock` (now present), taken
        off the file: the caller applies each, `remove`s it, or `file`s it again."""
        heap = self._filed.get(client)
        woken = []
        while heap and heap[0][0] < clock:
            _, key, entry = heapq.heappop(heap)
            if self._entries.get(key) is entry:
                woken.append(entry)
        if heap is not None and not heap:
            del self._filed[client]
        return woken

    def remove(self, entry: Waiting) -> None:
        """Releases an entry (applied, obsolete or dropped) and its charge."""
        if self._entries.pop(id(entry), None) is None:
            return
        share = self.shares[entry.holder]
        share[0] -= 1
        share[1] -= entry.cost
        share[2] -= entry.structs
        if not share[0]:
            del self.shares[entry.holder]
        self.cost -= entry.cost

    def expire(self, max_age: float) -> list[Waiting]:
        """Drops and returns the untrusted entries that have waited longer than `max_age`
        seconds (trusted data is the owner's own: it waits as long as it must)."""
        cutoff = self.clock() - max_age
        return self.drop(lambda entry: entry.trusted or entry.since >= cutoff)

    def drop(self, keep: Callable[[Waiting], bool]) -> list[Waiting]:
        """Drops and returns the entries `keep` rejects."""
        gone = [entry for entry in self._entries.values() if not keep(entry)]
        for entry in gone:
            self.remove(entry)
        if gone:  # unfile them too: a file entry keeps its data alive
            for client, heap in list(self._filed.items()):
                heap[:] = [filed for filed in heap if self._entries.get(filed[1]) is filed[2]]
                heapq.heapify(heap)
                if not heap:
                    del self._filed[client]
        return gone

    def deletions(self) -> IdSet:
        """Every deletion waiting for its ids."""
        held = IdSet()
        for entry in self._entries.values():
            if entry.parsed is None:
                held = held.union(entry.deletes)
        return held

    def structs(self) -> list[Waiting]:
        return [entry for entry in self._entries.values() if entry.parsed is not None]

    def clear(self) -> None:
        self.drop(lambda entry: False)  # releases each entry's charge (the shares may be shared)

"""`IdSet`: sets of Yjs ids stored as sorted, merged clock ranges per client.

A Yjs delete set is an `IdSet`; so are "what is missing" reports. Ranges are half-open
`(start, end)` clock intervals; every method keeps them sorted, disjoint and non-adjacent, so two
sets holding the same ids compare equal.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Final

from crdtdoc.encoding import Decoder, Encoder

Range = tuple[int, int]
_END: Final = 2**64  # sorts after any clock


def _normalize(ranges: list[Range]) -> list[Range]:
    ranges = sorted(r for r in ranges if r[1] > r[0])
    out: list[Range] = []
    for start, end in ranges:
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _minus(ranges: list[Range], holes: list[Range]) -> list[Range]:
    """The parts of sorted, disjoint `ranges` outside sorted, disjoint `holes`: one merge pass
    over both, or, when `holes` is much the longer (a small set checked against a room's), a
    bisection per range instead of the walk, so the cost follows the small side."""
    kept: list[Range] = []
    count = len(holes)
    jump = count > 8 * len(ranges)
    k = 0  # every hole before this one ends at or before the current range's start
    for start, end in ranges:
        if jump:
            k = max(k, bisect.bisect_right(holes, (start, _END)) - 1, 0)
        else:
            while k < count and holes[k][1] <= start:
                k += 1
        cur = start
        while k < count:
            hole_start, hole_end = holes[k]
            if hole_start >= end:
                break
            if hole_end > cur:
                if hole_start > cur:
                    kept.append((cur, hole_start))
                cur = hole_end
                if cur >= end:
                    break  # this hole may reach into the next range: keep `k` on it
            k += 1
        if cur < end:
            kept.append((cur, end))
    return kept


class IdSet:
    """Immutable-by-convention set of ids; mutate only through `add` while building one."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Mapping[int, list[Range]] | None = None) -> None:
        self._ranges: dict[int, list[Range]] = {}
        if ranges:
            for client, rs in ranges.items():
                norm = _normalize(list(rs))
                if norm:
                    self._ranges[client] = norm

    @classmethod
    def _of(cls, ranges: dict[int, list[Range]]) -> IdSet:
        """An IdSet of ranges already sorted, disjoint and non-adjacent (what the methods below
        produce from their own), without checking them again; empty lists are left out."""
        made = cls()
        made._ranges = {c: rs for c, rs in ranges.items() if rs}
        return made

    def add(self, client: int, start: int, end: int) -> None:
        """Adds the ids `client:start` up to (not including) `client:end`."""
        if end <= start:
            return
        rs = self._ranges.get(client)
        if rs is None:
            self._ranges[client] = [(start, end)]
        elif start >= rs[-1][1]:
            if start == rs[-1][1]:
                rs[-1] = (rs[-1][0], end)
            else:
                rs.append((start, end))
        else:  # in the middle: merge with the neighbours it touches (O(log n) to find them)
            lo = bisect.bisect_left(rs, (start,))
            if lo and rs[lo - 1][1] >= start:
                lo -= 1
            hi = lo
            while hi < len(rs) and rs[hi][0] <= end:
                hi += 1
            if hi > lo:
                start, end = min(start, rs[lo][0]), max(end, rs[hi - 1][1])
            rs[lo:hi] = [(start, end)]

    def update(self, other: IdSet) -> None:
        """Adds every id of `other` in place (while building a set, as `add` does)."""
        for client, ranges in other._ranges.items():
            if client in self._ranges:
                for start, end in ranges:
                    self.add(client, start, end)
            else:
                self._ranges[client] = list(ranges)

    def copy(self) -> IdSet:
        """An independent copy (the ranges are already in order: nothing is sorted again)."""
        return IdSet._of({c: list(rs) for c, rs in self._ranges.items()})

    @property
    def ranges(self) -> dict[int, list[Range]]:
        """client id -> sorted disjoint `(start, end)` ranges (a copy)."""
        return {c: list(rs) for c, rs in self._ranges.items()}

    def clients(self) -> list[int]:
        return sorted(self._ranges)

    def client_ranges(self, client: int) -> list[Range]:
        return list(self._ranges.get(client, ()))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Yields `(client, start, end)` in client order."""
        for client in sorted(self._ranges):
            for start, end in self._ranges[client]:
                yield client, start, end

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __len__(self) -> int:
        """The number of ids in the set."""
        return sum(end - start for _, start, end in self)

    def range_count(self) -> int:
        """The number of ranges: what the set costs to hold and to work with."""
        return sum(len(rs) for rs in self._ranges.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdSet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(tuple((c, tuple(rs)) for c, rs in sorted(self._ranges.items())))

    def __repr__(self) -> str:
        body = ", ".join(f"{c}:{s}-{e}" for c, s, e in self)
        return f"IdSet({body})"

    def contains(self, client: int, clock: int) -> bool:
        ranges = self._ranges.get(client)
        if not ranges:
            return False
        at = bisect.bisect_right(ranges, (clock, _END)) - 1  # the last range starting <= clock
        return at >= 0 and clock < ranges[at][1]

    def gaps(self, client: int, start: int, end: int) -> list[Range]:
        """The parts of `client`'s clocks `[start, end)` that are not in this set, in order."""
        ranges = self._ranges.get(client)
        if not ranges:
            return [(start, end)] if start < end else []
        at = max(bisect.bisect_right(ranges, (start, _END)) - 1, 0)
        out: list[Range] = []
        pos = start
        while at < len(ranges) and pos < end:
            lo, hi = ranges[at]
            if lo >= end:
                break
            if lo > pos:
                out.append((pos, lo))
            if hi > pos:
                pos = hi
            at += 1
        if pos < end:
            out.append((pos, end))
        return out

    def union(self, other: IdSet) -> IdSet:
        merged: dict[int, list[Range]] = {c: list(rs) for c, rs in self._ranges.items()}
        for c, rs in other._ranges.items():
            mine = merged.get(c)
            merged[c] = _normalize(mine + rs) if mine else list(rs)
        return IdSet._of(merged)

    def difference(self, other: IdSet) -> IdSet:
        out: dict[int, list[Range]] = {}
        for c, rs in self._ranges.items():
            holes = other._ranges.get(c)
            out[c] = _minus(rs, holes) if holes else list(rs)
        return IdSet._of(out)

    def issubset(self, other: IdSet) -> bool:
        """Whether every id here is in `other`; stops at the first client that is not."""
        for c, rs in self._ranges.items():
            holes = other._ranges.get(c)
            if not holes or _minus(rs, holes):
                return False
        return True

    def intersection(self, other: IdSet) -> IdSet:
        return self.difference(self.difference(other))

    def clip_to(self, state: Mapping[int, int]) -> IdSet:
        """The ids in this set that a document with state vector `state` holds."""
        out: dict[int, list[Range]] = {}
        for c, rs in self._ranges.items():
            limit = state.get(c, 0)
            out[c] = [(s, min(e, limit)) for s, e in rs if s < limit]
        return IdSet._of(out)

    # Yjs delete-set encoding: varuint clients, then per client: client, count, (clock, len)*.
    def encode_into(self, enc: Encoder) -> None:
        enc.write_var_uint(len(self._ranges))
        for client in sorted(self._ranges, reverse=True):
            rs = self._ranges[client]
            enc.write_var_uint(client)
            enc.write_var_uint(len(rs))
            for start, end in rs:
                enc.write_var_uint(start)
                enc.write_var_uint(end - start)

    def encode(self) -> bytes:
        enc = Encoder()
        self.encode_into(enc)
        return enc.to_bytes()

    @classmethod
    def decode_from(cls, dec: Decoder, *, max_clock: int, max_client: int) -> IdSet:
        """Reads a Yjs delete set, bounds-checking client ids and clocks."""
        result = cls()
        n_clients = dec.read_count("delete-set client", 2)
        for _ in range(n_clients):
            client = dec.read_var_uint()
            if client >= max_client:
                raise dec.fail(f"client id {client} in delete set is not below 2^53")
            n_ranges = dec.read_count("delete-set range", 2)
            ranges: list[Range] = []  # ranges in order, as encoders write them: appended
            for _ in range(n_ranges):
                clock = dec.read_var_uint()
                length = dec.read_var_uint()
                end = clock + length
                if end >= max_clock:
                    raise dec.fail(f"deleted range {client}:{clock}+{length} reaches 2^32")
                if not length:
                    continue
                if not ranges or clock > ranges[-1][1]:
                    ranges.append((clock, end))
                elif clock == ranges[-1][1]:
                    ranges[-1] = (ranges[-1][0], end)
                else:  # out of order or overlapping: merged where it belongs
                    result._merge(client, ranges)
                    ranges = []
                    result.add(client, clock, end)
            result._merge(client, ranges)
        return result

    def _merge(self, client: int, ranges: list[Range]) -> None:
        """Adds sorted, disjoint, non-adjacent `ranges` of `client` (kept as they are when the
        client has none yet: the common case)."""
        if not ranges:
            return
        if client not in self._ranges:
            self._ranges[client] = ranges
            return
        for start, end in ranges:
            self.add(client, start, end)

"""Rate limits: token buckets per identity (or per address for anonymous clients)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from crdtdoc.causal import Shares


@dataclass
class Bucket:
    """Allows `rate` units per second on average, bursts up to `burst`."""

    rate: float
    burst: float
    level: float | None = None  # None until first used: then full
    stamp: float = 0.0

    def _refill(self, now: float | None) -> float:
        now = time.monotonic() if now is None else now
        if self.level is None:
            self.level = self.burst
        else:
            self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.level

    def take(self, amount: float, now: float | None = None) -> bool:
        """Takes `amount` if the bucket holds it; False (nothing taken) if not."""
        level = self._refill(now)
        if amount > level:
            return False
        self.level = level - amount
        return True

    def charge(self, amount: float, now: float | None = None) -> float:
        """Takes `amount` even past what the bucket holds (it goes into debt); returns the
        seconds until the debt is paid back, 0 if there is none."""
        self.level = self._refill(now) - amount
        return max(0.0, -self.level / self.rate)


def _rate(value: float) -> str:
    """A rate as a person reads it: 8,388,608, not 8.38861e+06."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


# Each identity's buckets, by position. What the hub sends an identity (`answered`) is a debt
# of its own, at the byte rate: it delays reading that identity's messages (`debt`), but an
# update read after the debt was waited out is never refused for bytes the hub chose to send.
_UPDATES, _BYTES, _AWARENESS, _REQUESTS, _STRUCTS, _ANSWERED = range(6)


class RateLimits:
    """The hub's buckets, keyed by identity; shared by all of an identity's connections."""

    def __init__(
        self,
        updates_per_s: float,
        bytes_per_s: float,
        awareness_per_s: float,
        requests_per_s: float = 50.0,
        structs_per_s: float = 20_000.0,
    ) -> None:
        self._settings = (
            updates_per_s,
            bytes_per_s,
            awareness_per_s,
            requests_per_s,
            structs_per_s,
        )
        self._buckets: dict[str, tuple[Bucket, ...]] = {}
        self.waiting: Shares = {}
        """What each identity has waiting in the causal buffers of all rooms (`crdtdoc.causal`)."""

    def _for(self, who: str) -> tuple[Bucket, ...]:
        buckets = self._buckets.get(who)
        if buckets is None:
            rates = (*self._settings, self._settings[_BYTES])
            buckets = tuple(Bucket(rate, rate * 2) for rate in rates)
            self._buckets[who] = buckets
        return buckets

    def structs(self, who: str, count: int) -> None:
        """Charges the structs of an update (what judging and applying it costs). Never
        refuses: past the budget `debt` says how long to wait before serving `who` again, so a
        large but legitimate update is served, later."""
        self._for(who)[_STRUCTS].charge(count)

    def debt(self, who: str) -> float:
        """Seconds until `who`'s struct and byte debts are paid back (0: none): the hub reads
        or applies no more of `who`'s work before that."""
        buckets = self._for(who)
        return max(
            buckets[_STRUCTS].charge(0), buckets[_ANSWERED].charge(0), buckets[_BYTES].charge(0)
        )

    def answered(self, who: str, size: int) -> None:
        """Charges the bytes of a sync step 2 the hub sent `who` (asking for a whole room is
        cheap; answering is not) to its byte budget, as a debt."""
        self._for(who)[_ANSWERED].charge(size)

    def update(self, who: str, size: int) -> str | None:
        """None if allowed, else which limit was exceeded. An update larger than the whole
        byte budget (2 s of it), which no wait would let through, is taken and paid for as a
        debt instead: refused, it would come back as the step 2 of every reconnect (a client
        merging a burst of edits, or holding them offline)."""
        buckets = self._for(who)
        if not buckets[_UPDATES].take(1):
            return f"more than {_rate(self._settings[_UPDATES])} updates per second"
        data = buckets[_BYTES]
        if size > data.burst:
            data.charge(size)  # `debt` waits it out before reading more
        elif not data.take(size):
            return f"more than {_rate(self._settings[_BYTES])} update bytes per second"
        return None

    def awareness(self, who: str) -> str | None:
        if not self._for(who)[_AWARENESS].take(1):
            return f"more than {_rate(self._settings[_AWARENESS])} presence updates per second"
        return None

    def request(self, who: str) -> str | None:
        """A coordination request (each may cost a store transaction): None if allowed."""
        if not self._for(who)[_REQUESTS].take(1):
            return f"more than {_rate(self._settings[_REQUESTS])} requests per second"
        return None

    def forget(self, who: str) -> None:
        self._buckets.pop(who, None)

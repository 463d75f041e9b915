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


# Each identity's buckets, by position.
_UPDATES, _BYTES, _AWARENESS, _REQUESTS, _STRUCTS = range(5)


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
            buckets = tuple(Bucket(rate, rate * 2) for rate in self._settings)
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
        return max(buckets[_STRUCTS].charge(0), buckets[_BYTES].charge(0))

    def answered(self, who: str, size: int) -> None:
        """Charges the bytes of a sync step 2 the hub sent `who` (asking for a whole room is
        cheap; answering is not) to its byte budget, as a debt."""
        self._for(who)[_BYTES].charge(size)

    def update(self, who: str, size: int) -> str | None:
        """None if allowed, else which limit was exceeded."""
        buckets = self._for(who)
        if not buckets[_UPDATES].take(1):
            return f"more than {self._settings[_UPDATES]:g} updates per second"
        if not buckets[_BYTES].take(size):
            return f"more than {self._settings[_BYTES]:g} update bytes per second"
        return None

    def awareness(self, who: str) -> str | None:
        if not self._for(who)[_AWARENESS].take(1):
            return f"more than {self._settings[_AWARENESS]:g} presence updates per second"
        return None

    def request(self, who: str) -> str | None:
        """A coordination request (each may cost a store transaction): None if allowed."""
        if not self._for(who)[_REQUESTS].take(1):
            return f"more than {self._settings[_REQUESTS]:g} requests per second"
        return None

    def forget(self, who: str) -> None:
        self._buckets.pop(who, None)

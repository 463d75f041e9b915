"""Rate limits: token buckets per identity (or per address for anonymous clients)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Bucket:
    """Allows `rate` units per second on average, bursts up to `burst`."""

    rate: float
    burst: float
    level: float = -1.0
    stamp: float = 0.0

    def take(self, amount: float, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.level < 0:
            self.level, self.stamp = self.burst, now
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.level:
            return False
        self.level -= amount
        return True


class RateLimits:
    """The hub's buckets, keyed by identity; shared by all of an identity's connections."""

    def __init__(
        self,
        updates_per_s: float,
        bytes_per_s: float,
        awareness_per_s: float,
        requests_per_s: float = 50.0,
    ) -> None:
        self._settings = (updates_per_s, bytes_per_s, awareness_per_s, requests_per_s)
        self._buckets: dict[str, tuple[Bucket, Bucket, Bucket, Bucket]] = {}

    def _for(self, who: str) -> tuple[Bucket, Bucket, Bucket, Bucket]:
        buckets = self._buckets.get(who)
        if buckets is None:
            u, b, a, r = self._settings
            buckets = (Bucket(u, u * 2), Bucket(b, b * 2), Bucket(a, a * 2), Bucket(r, r * 2))
            self._buckets[who] = buckets
        return buckets

    def update(self, who: str, size: int) -> str | None:
        """None if allowed, else which limit was exceeded."""
        updates, data, _, _ = self._for(who)
        if not updates.take(1):
            return f"more than {self._settings[0]:g} updates per second"
        if not data.take(size):
            return f"more than {self._settings[1]:g} update bytes per second"
        return None

    def awareness(self, who: str) -> str | None:
        if not self._for(who)[2].take(1):
            return f"more than {self._settings[2]:g} presence updates per second"
        return None

    def request(self, who: str) -> str | None:
        """A coordination request (each may cost a store transaction): None if allowed."""
        if not self._for(who)[3].take(1):
            return f"more than {self._settings[3]:g} requests per second"
        return None

    def forget(self, who: str) -> None:
        self._buckets.pop(who, None)

"""Reconnect delays: exponential backoff with jitter (each delay drawn from [cap/2, cap]), so a
hub restart is not met by every agent reconnecting in the same instant."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.1
    """Upper bound of the first delay, in seconds."""
    maximum: float = 10.0
    """Upper bound of any delay, in seconds."""
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before reconnect attempt `attempt` (0 for the first retry)."""
        cap = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return (rng or random).uniform(cap / 2, cap)

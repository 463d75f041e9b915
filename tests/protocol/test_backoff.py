"""Reconnect delays (`crdtdoc.protocol.backoff`): exponential, capped, jittered in [cap/2, cap]."""

from __future__ import annotations

import random

from crdtdoc.protocol.backoff import Backoff


def test_delays_grow_by_the_factor_up_to_the_maximum_and_stay_in_the_upper_half() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0, factor=2.0)
    rng = random.Random(7)
    for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (4, 1.6), (5, 2.0), (50, 2.0)]:
        for _ in range(200):
            delay = backoff.delay(attempt, rng)
            assert cap / 2 <= delay <= cap, (attempt, delay)


def test_delays_are_jittered_and_reproducible_from_a_seed() -> None:
    backoff = Backoff()
    first = [backoff.delay(3, random.Random(1)) for _ in range(3)]
    assert len(set(first)) == 1  # the same seed, the same delay
    spread = {backoff.delay(3, random.Random(seed)) for seed in range(20)}
    assert len(spread) == 20  # agents do not reconnect in the same instant


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert 5.0 <= Backoff(maximum=10.0).delay(10**9, random.Random(0)) <= 10.0

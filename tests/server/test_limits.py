"""The hub's rate limits: budgets that delay or refuse an identity's work."""

from __future__ import annotations

from server.limits import RateLimits


def test_bytes_the_hub_sends_delay_reading_but_never_refuse_an_update() -> None:
    """User review: a joiner of a large room was answered the room twice (its queue overflowed
    before the first answer left), the second charge landed after the reader had waited out
    the first, and the joiner's next 20-byte edit was refused with 4429 ('more than 8.38861e+06
    update bytes per second'). Answers are a debt of their own: they delay, never refuse."""
    limits = RateLimits(100, 1000, 10)
    limits.answered("joiner", 50_000)  # the room, sent twice
    assert limits.debt("joiner") > 10  # its messages are read later
    assert limits.update("joiner", 20) is None  # but an update read then is taken
    refused = [limits.update("flooder", 900) for _ in range(4)]
    assert refused[-1] == "more than 1,000 update bytes per second"

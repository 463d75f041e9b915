"""The hub's rate limits: budgets that delay or refuse an identity's work."""

from __future__ import annotations

from crdtdoc.server.limits import RateLimits


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


def test_an_update_larger_than_the_whole_byte_budget_is_taken_as_a_debt() -> None:
    """No wait lets an update through that is larger than the bucket can ever hold: refused, it
    came back as the step 2 of every reconnect, for ever (review of the client's merged
    sends). It is taken, and the identity is read again once the debt is paid."""
    limits = RateLimits(100, 1000, 10)
    assert limits.update("merger", 5000) is None
    assert 2.9 < limits.debt("merger") <= 3.0  # 5,000 bytes against a full 2,000
    assert limits.debt("other") == 0
    assert limits.update("merger", 20) is not None  # read before the debt is paid: too fast

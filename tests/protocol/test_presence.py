"""Presence states as a crdtdoc client reads them (`crdtdoc.protocol.presence`)."""

from __future__ import annotations

import pytest

from crdtdoc.errors import InvalidValue
from crdtdoc.protocol.awareness import KEPT_CLIENT_IDS
from crdtdoc.protocol.presence import check_presence, parse_presence, presence_state


def test_only_a_status_the_hub_keeps_ends_at_a_time() -> None:
    """Any client may write an `until` field: read from an ordinary client id it made a second
    "alice ... (until ...)" look like the status the hub keeps for alice."""
    state = presence_state("alice", "reviewing", "t1", until=2_000_000_000.0)
    forged = parse_presence(7, state)
    assert forged.until is None and forged.agent == "alice"
    kept = parse_presence(KEPT_CLIENT_IDS + 5, state)
    assert kept.until == 2_000_000_000.0 and (kept.status, kept.task) == ("reviewing", "t1")


@pytest.mark.parametrize(
    ("status", "task", "words"),
    [(5, None, "is a str"), ("x" * 201, None, "at most 200"), ("ok", ["t"], "is a str")],
)
def test_presence_values_are_checked(status: object, task: object, words: str) -> None:
    with pytest.raises(InvalidValue, match=words):
        check_presence(status, task)


def test_a_state_no_reader_can_print_shows_as_nothing() -> None:
    """A hub that relayed it anyway (an older one): the reader shows no agent, no status, and
    nothing a JSON writer would choke on."""
    for state in ('{"agent": "m\\ud800", "status": "x"}', '{"agent": "m", "n": 1e999}'):
        shown = parse_presence(3, state)
        assert (shown.agent, shown.status, shown.state) == (None, None, {"value": None})

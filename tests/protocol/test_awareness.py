from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness


def test_round_trip_and_removal_marker() -> None:
    entries = [AwarenessEntry(7, 3, '{"user":{"name":"ané"}}'), AwarenessEntry(9, 4, "null")]
    decoded = decode_awareness(encode_awareness(entries), max_state_bytes=1000)
    assert decoded == entries
    assert [e.removed for e in decoded] == [False, True]


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (encode_awareness([AwarenessEntry(1, 1, "{x")]), "not valid JSON"),
        (encode_awareness([AwarenessEntry(1, 1, "[" * 50 + "]" * 49)]), "not valid JSON"),
        (encode_awareness([AwarenessEntry(1, 1, '"' + "a" * 200 + '"')]), "at most 100"),
        (encode_awareness([AwarenessEntry(1, 1, "{}")]) + b"\x00", "trailing"),
        (b"\x02\x01\x01\x02{}", "truncated|count"),
        (b"\xff\xff\x03", "count|entries|truncated"),
    ],
)
def test_refusals_say_what_is_wrong(data: bytes, pattern: str) -> None:
    with pytest.raises(InvalidMessage, match=pattern):
        decode_awareness(data, max_state_bytes=100)


def test_json_nested_past_the_interpreter_stack_is_refused_not_crashed() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        decode_awareness(encode_awareness([AwarenessEntry(1, 1, deep)]), max_state_bytes=10**6)


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_invalid_message(data: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        decode_awareness(data, max_state_bytes=100)


@pytest.mark.parametrize(
    "state",
    [
        '{"agent": "mallory\\ud800"}',  # a lone surrogate, escaped: no reader can print it
        '{"\\udfff": 1}',  # in a key too
        '{"agent": "m", "n": NaN}',  # JavaScript's JSON.parse refuses these three
        '{"agent": "m", "n": Infinity}',
        '{"agent": "m", "n": -Infinity}',
        '{"agent": "m", "big": 1e999}',  # Python reads it as inf
    ],
)
def test_a_state_no_reader_can_print_or_parse_is_refused(state: str) -> None:
    """Other agents' readers (the MCP server, `crdtdoc peers`, a stock Yjs client's JSON.parse)
    must be able to read every state the hub relays: one they cannot is refused at the hub."""
    data = encode_awareness([AwarenessEntry(7, 1, state)])
    with pytest.raises(InvalidMessage, match="client 7"):
        decode_awareness(data, max_state_bytes=10_000)

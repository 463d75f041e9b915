"""Typed coordination requests (`crdtdoc.protocol.requests`): what a client writes the hub reads
back the same, and whatever a hostile client sends, reading it only ever raises `RequestError`
with code `invalid`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import Replica, UsageError
from crdtdoc.protocol.requests import (
    MAX_COMMIT_UPDATES,
    MAX_NAME,
    MAX_TTL,
    MAX_WAIT,
    MIN_TTL,
    Acquire,
    Commit,
    ListLeases,
    NextNumber,
    ReadProvenance,
    Release,
    Renew,
    ReplyCode,
    RequestError,
    SetStatus,
    parse_request,
    read_request,
)
from crdtdoc.provenance import MAX_HUB_TAG, MAX_ROWS_PER_REPLY

names = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=MAX_NAME,
)
ttls = st.floats(MIN_TTL, MAX_TTL)
clients = st.none() | st.integers(0, 2**53 - 1)
tokens = st.integers(-(2**63), 2**63 - 1)
requests = st.one_of(
    st.builds(Acquire, names, ttls, st.floats(0.0, MAX_WAIT), clients),
    st.builds(Renew, names, tokens, ttls, clients),
    st.builds(Release, names, tokens, clients),
    st.builds(ListLeases),
    st.builds(NextNumber, names),
)


@given(requests)
def test_what_a_client_writes_the_hub_reads_back(request: Any) -> None:
    assert parse_request(request.op, request.to_args()) == request


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.one_of(st.sampled_from(["acquire", "renew", "release", "leases", "next"]), values), values
)
def test_any_request_reads_or_is_refused_as_invalid(op: object, args: object) -> None:
    try:
        parse_request(op, args)
    except RequestError as exc:
        assert exc.code == ReplyCode.INVALID and str(exc)


@pytest.mark.parametrize(
    ("op", "args", "says"),
    [
        ("steal", {}, "unknown operation 'steal'"),
        ("acquire", [], "args must be a map"),
        ("acquire", {"name": "", "ttl": 1}, "name must be a str of 1..200"),
        ("acquire", {"name": "x" * 201, "ttl": 1}, "name must be a str of 1..200"),
        ("acquire", {"name": "a", "ttl": 0.01}, "ttl must be a number from 0.1 to 3600"),
        ("acquire", {"name": "a", "ttl": True}, "ttl must be a number"),
        ("acquire", {"name": "a", "ttl": 1, "wait": 601}, "wait must be a number from 0 to 600"),
        ("acquire", {"name": "a", "ttl": 1, "client": "x" * 10_000}, "client must be an int"),
        ("renew", {"name": "a", "token": 1.5, "ttl": 1}, "token must be an int"),
        ("release", {"name": "a", "token": False}, "token must be an int"),
        ("next", {"sequence": 7}, "sequence must be a str"),
    ],
)
def test_bad_arguments_are_refused_by_name(op: str, args: object, says: str) -> None:
    with pytest.raises(RequestError, match=says) as refused:
        parse_request(op, args)
    assert refused.value.code == "invalid"  # a str on the wire


def test_a_status_is_checked_as_presence_is() -> None:
    assert SetStatus.from_args({"status": "reviewing", "task": "t1", "ttl": 60}) == SetStatus(
        "reviewing", "t1", 60.0
    )
    assert SetStatus.from_args({"status": None}) == SetStatus(None, None, 600.0)
    for args in ({"status": 5}, {"status": "x" * 201}, {"status": "ok", "ttl": 0.5}):
        with pytest.raises(RequestError) as refused:
            SetStatus.from_args(args)
        assert refused.value.code is ReplyCode.INVALID


def test_reply_codes_travel_as_the_strings_protocol_md_names() -> None:
    assert ReplyCode.HELD == "held" and ReplyCode.RATE_LIMITED == "rate_limited"
    assert {str(code) for code in ReplyCode} >= {"fenced", "conflict", "unavailable", "limit"}


def test_a_guarded_commit_reads_back_and_refuses_what_it_cannot_use() -> None:
    replica = Replica("ann", client_id=7)
    replica.document("d").insert(0, "hello")
    replica.document("d").delete(0, 1)
    seen = replica.version()
    commit = Commit((b"\x00\x00", b"\x00\x01"), 7, ("deploy", 3), seen, ("d",))
    assert Commit.from_args(commit.to_args()) == commit
    assert Commit.from_args(Commit((b"\x00\x00",), 7).to_args()) == Commit((b"\x00\x00",), 7)
    refused = [
        {"updates": [], "client": 7},
        {"updates": [b"\x00\x00"] * (MAX_COMMIT_UPDATES + 1), "client": 7},
        {"updates": [b"\x00\x00"], "client": True},
        {"updates": [b"\x00\x00"], "client": 7, "fence": {"name": "deploy", "token": "3"}},
        {"updates": [b"\x00\x00"], "client": 7, "fence": ["deploy", 3]},
        {"updates": [b"\x00\x00"], "client": 7, "expect": b"\xff\xff", "on": []},
        {"updates": [b"\x00\x00"], "client": 7, "expect": seen.to_bytes(), "on": "d"},
    ]
    for args in refused:
        with pytest.raises(RequestError) as refusal:
            Commit.from_args(args)
        assert refusal.value.code is ReplyCode.INVALID, args


@pytest.mark.parametrize("name", ["a\x00b", "half \ud800", "\udfff"])
def test_a_name_no_store_can_hold_is_refused_on_both_sides(name: str) -> None:
    """PostgreSQL refuses NUL in text and no encoding carries a lone surrogate: the hub refuses
    such a name as invalid (not `unavailable` after a failed write), and a client building the
    request refuses it as a usage error before anything is sent (not a UnicodeEncodeError)."""
    for op, args in (
        ("acquire", {"name": name, "ttl": 5}),
        ("renew", {"name": name, "token": 1, "ttl": 5}),
        ("release", {"name": name, "token": 1}),
        ("next", {"sequence": name}),
    ):
        with pytest.raises(RequestError) as refused:
            parse_request(op, args)
        assert refused.value.code is ReplyCode.INVALID
    fenced = {"updates": [b"\x00\x00"], "client": 1, "fence": {"name": name, "token": 1}}
    with pytest.raises(RequestError):
        Commit.from_args(fenced)
    for build in (
        lambda: Acquire(name, 5.0),
        lambda: Renew(name, 1, 5.0),
        lambda: Release(name, 1),
        lambda: NextNumber(name),
        lambda: Commit((b"\x00\x00",), 1, (name, 1)),
    ):
        with pytest.raises(UsageError):
            build()
    if "\x00" not in name:  # a status is JSON inside presence, where NUL is escaped: kept
        with pytest.raises(UsageError):
            SetStatus(f"busy {name}")


@given(
    st.none()
    | st.tuples(st.text("0123456789abcdef", max_size=MAX_HUB_TAG), st.integers(0, 2**63 - 1)),
    st.integers(1, MAX_ROWS_PER_REPLY),
)
def test_a_provenance_read_round_trips(after: tuple[str, int] | None, limit: int) -> None:
    asked = ReadProvenance(after, limit)
    assert read_request(asked.op, asked.to_args()) == asked


@given(values)
def test_any_provenance_read_reads_or_is_refused_as_invalid(args: object) -> None:
    try:
        read_request("provenance", args)
    except RequestError as exc:
        assert exc.code == ReplyCode.INVALID and str(exc)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"limit": 0}, "limit must be an int from 1 to 1000"),
        ({"limit": MAX_ROWS_PER_REPLY + 1}, "limit must be an int"),
        ({"after": ["0f", 1, 2]}, "after must be"),
        ({"after": ["f" * (MAX_HUB_TAG + 1), 1]}, "after must be"),
        ({"after": ["0f", True]}, "after must be"),
        ({"after": ["0f", 2**63]}, "after must be"),
        ({"after": ["h\x00", 1]}, "after must be"),
    ],
)
def test_bad_provenance_reads_are_refused_by_name(args: dict[str, Any], says: str) -> None:
    with pytest.raises(RequestError, match=says):
        ReadProvenance.from_args(args)

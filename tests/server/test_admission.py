"""Admission, decided before any room loads: the room a path names, what a token allows, and the
connections an address and an identity may hold."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from crdtdoc.errors import AuthError, Forbidden, RateLimited, RemoteError
from crdtdoc.server.admission import MAX_ROOM_NAME, Admission, authenticate, room_name
from crdtdoc.server.config import HubConfig
from crdtdoc.tokens import create_token

SECRET = b"s" * 32


def test_room_names_come_from_the_path_whole_and_printable() -> None:
    assert room_name("/team%2Fnotes?token=x") == "team/notes"
    for bad in ("/", "", "/a\x01b", "/" + "r" * (MAX_ROOM_NAME + 1)):
        with pytest.raises(RemoteError):
            room_name(bad)


def test_a_token_comes_from_the_query_or_the_bearer_header_and_must_allow_the_room() -> None:
    token = create_token(SECRET, "ann", "team-*")
    assert authenticate(None, None, "any") is None  # no secret: no token needed
    by_query = authenticate(SECRET, Request(f"/team-a?token={token}", Headers()), "team-a")
    assert by_query is not None and by_query.agent == "ann"
    header = Headers({"Authorization": f"Bearer {token}"})
    assert authenticate(SECRET, Request("/team-a", header), None) == by_query
    with pytest.raises(AuthError):
        authenticate(SECRET, Request("/team-a", Headers()), "team-a")
    with pytest.raises(Forbidden, match="does not allow room 'other'"):
        authenticate(SECRET, Request(f"/other?token={token}", Headers()), "other")


def test_connections_are_counted_per_address_and_identity_and_given_back() -> None:
    admission = Admission(HubConfig(max_connections_per_ip=2, max_connections_per_identity=1))
    admission.admit("ann", "10.0.0.1")
    with pytest.raises(RateLimited, match="for ann"):
        admission.admit("ann", "10.0.0.2")
    admission.admit(None, "10.0.0.1")
    with pytest.raises(RateLimited, match=r"from 10\.0\.0\.1"):
        admission.admit(None, "10.0.0.1")
    admission.leave("ann", "10.0.0.1")
    admission.admit("ann", "10.0.0.1")  # its place was given back

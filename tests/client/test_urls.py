"""`crdtdoc.client.urls`: a room's websocket URL on each hub (the room name quoted as one path
segment), and the token added to the query; anything but a bare ws:// or wss:// hub address is
refused with a message saying what to give instead."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from crdtdoc.client.urls import room_url, room_urls
from crdtdoc.errors import InvalidValue, UsageError


def test_room_urls_quote_the_room_as_one_segment_on_every_hub() -> None:
    urls = room_urls("ws://a:1, wss://b:2/", "plans ?#/x")
    assert urls == ["ws://a:1/plans%20%3F%23%2Fx", "wss://b:2/plans%20%3F%23%2Fx"]
    assert unquote(urlsplit(urls[0]).path[1:]) == "plans ?#/x"
    assert room_urls("ws://[::1]:8765", "r") == ["ws://[::1]:8765/r"]


@pytest.mark.parametrize(
    ("hubs", "room", "message"),
    [
        ("ws://a:1", "", "room name is empty"),
        ("http://a:1", "r", "not a hub address"),
        ("a:1", "r", "not a hub address"),
        ("ws://a:1/room", "r", "names a path"),
        ("ws://a:1?x=1", "r", "names a path"),
        ("ws://a:1,ftp://b", "r", "'ftp://b' is not a hub address"),
    ],
)
def test_room_urls_refuse_what_is_not_a_bare_hub_address(
    hubs: str, room: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        room_urls(hubs, room)


def test_room_url_adds_the_token_to_the_query_quoted() -> None:
    assert room_url("ws://h:1/r", None) == "ws://h:1/r"
    assert room_url("wss://h:1/r", "a b&c=d") == "wss://h:1/r?token=a%20b%26c%3Dd"
    assert room_url("ws://h:1/r?x=1#frag", "t") == "ws://h:1/r?x=1&token=t"  # fragment dropped


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1/r", "must start with ws://"),
        ("ws://h:1", "names no room"),
        ("ws://h:1/", "names no room"),
    ],
)
def test_room_url_refuses_a_url_without_a_room_or_of_another_scheme(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        room_url(url, "t")

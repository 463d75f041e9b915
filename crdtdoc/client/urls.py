"""Hub and room addresses: the websocket URL of a room on a hub, with its token.

Room names are quoted as one path segment, so a space, `?` or `#` in a name stays part of it;
a token rides in the query (`?token=`), the form stock Yjs providers can send too.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from crdtdoc.errors import InvalidValue, UsageError


def room_urls(hubs: str, room: str) -> list[str]:
    """The websocket URLs of `room` on each hub of `hubs` (comma-separated `ws://host:port`),
    the room name quoted as a path segment (a space, `?` or `#` in it stays part of it). Raises
    `InvalidValue` for a hub URL that already names a room, or anything but ws:// or wss://."""
    if not room:
        raise InvalidValue("the room name is empty")
    urls = []
    for hub in hubs.split(","):
        parts = urlsplit(hub.strip())
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise InvalidValue(f"{hub!r} is not a hub address: use ws://HOST:PORT (or wss://)")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise InvalidValue(
                f"{hub!r} names a path; give the hub's address alone (ws://HOST:PORT) and the "
                "room separately"
            )
        urls.append(f"{parts.scheme}://{parts.netloc}/{quote(room, safe='')}")
    return urls


def room_url(url: str, token: str | None) -> str:
    """`url` with `?token=` added (the form stock Yjs providers can send too)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise UsageError(f"hub URL must start with ws:// or wss://, got {url!r}")
    if not parts.path.strip("/"):
        raise UsageError(f"hub URL names no room: use ws://HOST:PORT/<room>, got {url!r}")
    query = parts.query
    if token is not None:
        query = (query + "&" if query else "") + "token=" + quote(token, safe="")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

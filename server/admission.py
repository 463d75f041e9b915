"""Who may connect to what, decided before any room is loaded: the room a request's path names
(`room_name`), what the token it carries allows (`authenticate`), and whether its address and
identity may hold one more connection (`Admission`). A refusal is a `RemoteError`, or
`RoomUnavailable` when the room itself cannot be opened; either closes the connection with its
code and reason.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from websockets.http11 import Request

from crdtdoc.errors import AuthError, CrdtdocError, Forbidden, RateLimited, RemoteError
from crdtdoc.server.config import HubConfig
from crdtdoc.tokens import Grant, verify_token

MAX_ROOM_NAME = 256


class RoomUnavailable(CrdtdocError):
    """A room could not be opened (too many rooms, or its stored data is unreadable)."""

    def __init__(self, message: str, close_code: int) -> None:
        super().__init__(message)
        self.close_code = close_code


def room_name(path: str) -> str:
    """The room a request path names (`/<room>?query`); raises `RemoteError` if it names none."""
    name = unquote(urlsplit(path).path).strip("/")
    if not name:
        raise RemoteError("no room in the URL: connect to ws://HOST:PORT/<room>")
    if len(name) > MAX_ROOM_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise RemoteError(f"room names are 1..{MAX_ROOM_NAME} printable characters")
    return name


def authenticate(secret: bytes | None, request: Request | None, room: str | None) -> Grant | None:
    """The grant of the request's token (`?token=` or `Authorization: Bearer`), checked against
    `room` unless that is None; None when the hub has no `secret`. Raises `AuthError` /
    `Forbidden`."""
    if secret is None:
        return None
    token = None
    if request is not None:
        query = parse_qs(urlsplit(request.path).query).get("token")
        token = query[0] if query else None
        header = request.headers.get("Authorization", "")
        if token is None and header.startswith("Bearer "):
            token = header[len("Bearer ") :].strip()
    if token is None:
        raise AuthError(
            "this hub needs a token: pass --token (or CRDTDOC_TOKEN) to crdtdoc, ?token=... "
            "or Authorization: Bearer to another client"
        )
    grant = verify_token(secret, token)
    if room is not None and not grant.allows_room(room):
        raise Forbidden(f"the token of {grant.agent} does not allow room {room!r}")
    return grant


class Admission:
    """The connections each address and each identity holds, against the hub's limits."""

    def __init__(self, config: HubConfig) -> None:
        self._config = config
        self._per_ip: dict[str, int] = {}
        self._per_identity: dict[str, int] = {}

    def admit(self, identity: str | None, ip: str) -> None:
        """Counts the connection against its identity's and address's limits; raises
        `RateLimited` (and counts nothing) past either."""
        if self._per_ip.get(ip, 0) >= self._config.max_connections_per_ip:
            raise RateLimited(f"too many connections from {ip}; close some and retry")
        if (
            identity is not None
            and self._per_identity.get(identity, 0) >= self._config.max_connections_per_identity
        ):
            raise RateLimited(f"too many connections for {identity}; close some and retry")
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if identity is not None:
            self._per_identity[identity] = self._per_identity.get(identity, 0) + 1

    def leave(self, identity: str | None, ip: str) -> None:
        """An admitted connection closed."""
        self._per_ip[ip] -= 1
        if identity is not None:
            self._per_identity[identity] -= 1

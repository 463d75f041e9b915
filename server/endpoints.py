"""The hub's answers to plain HTTP requests, given before any websocket handshake: `/healthz`
(the process runs), `/readyz` (it accepts connections and its store commits), `/metrics`
(Prometheus, any valid token when the hub has a secret), and the supervision pages of
`crdtdoc.server.web` (`/`, `/rooms/<room>`, `/rooms/<room>/state`, and the past:
`/rooms/<room>/history|at|blame`, `crdtdoc.server.web_history`; a token for the room when the
hub has a secret). A websocket upgrade passes through, unless the hub is full.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from crdtdoc.errors import AuthError, CrdtdocError, Forbidden, RemoteError
from crdtdoc.server.admission import RoomUnavailable, authenticate, room_name
from crdtdoc.server.web import page, room_list, room_state
from crdtdoc.server.web_history import VIEWS, past_view

if TYPE_CHECKING:
    from crdtdoc.server.commit import GroupCommitter
    from crdtdoc.server.config import HubConfig
    from crdtdoc.server.metrics import HubMetrics
    from crdtdoc.server.room import Room


class HubView(Protocol):
    """What the HTTP answers read of the hub (`crdtdoc.server.hub.Hub` is one)."""

    config: HubConfig
    metrics: HubMetrics
    connections: int

    @property
    def rooms(self) -> Mapping[str, Room]: ...

    @property
    def committer(self) -> GroupCommitter: ...

    @property
    def accepting(self) -> bool: ...

    async def room(self, name: str) -> Room: ...


log = logging.getLogger("crdtdoc.hub")


async def answer_http(hub: HubView, ws: ServerConnection, request: Request) -> Response | None:
    """The response to `request`, or None to go on with the websocket handshake."""
    path = urlsplit(request.path).path
    if path == "/healthz":
        return ws.respond(HTTPStatus.OK, "ok\n")
    if path == "/readyz":
        if not hub.accepting:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        failure = hub.committer.failure
        if failure is not None:  # the database's own words, never its file or URL
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"store failing: {failure}\n")
        return ws.respond(HTTPStatus.OK, "ready\n")
    if path == "/metrics":
        # With a secret: any valid token (whatever rooms it allows; a scraper's may allow
        # none). Metrics carry no room or agent names, but are the hub's, not the public's.
        try:
            authenticate(hub.config.secret, request, None)
        except AuthError as exc:
            return ws.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
        return _respond(
            ws, hub.metrics.render().decode(), "text/plain; version=0.0.4; charset=utf-8"
        )
    plain_http = "upgrade" not in request.headers.get("Connection", "").lower()
    if plain_http and path.startswith("/rooms/"):
        return await _web(hub, ws, request, path)
    if plain_http and path == "/":
        return _room_list(hub, ws, request)
    if hub.connections >= hub.config.max_connections:
        return ws.respond(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the hub serves at most {hub.config.max_connections} connections; retry later\n",
        )
    return None


def _respond(ws: ServerConnection, body: str, content_type: str) -> Response:
    """A 200 response with `content_type` (websockets' own respond() says text/plain)."""
    response = ws.respond(HTTPStatus.OK, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


async def _web(hub: HubView, ws: ServerConnection, request: Request, path: str) -> Response:
    """`/rooms/<room>`: the page; `/rooms/<room>/state`: what it shows, as JSON. Both need
    a token for the room when the hub has a secret (read-only is enough)."""
    rest = path[len("/rooms/") :].rstrip("/")
    view = rest.rsplit("/", 1)[-1] if "/" in rest else ""
    if view not in ("state", *VIEWS):
        view = ""
    name = unquote(rest.removesuffix("/" + view) if view else rest)
    try:
        room_name("/" + name)
        authenticate(hub.config.secret, request, name)
        room = await hub.room(name)
    except RemoteError as exc:
        status = (
            HTTPStatus.UNAUTHORIZED
            if isinstance(exc, AuthError)
            else (HTTPStatus.FORBIDDEN if isinstance(exc, Forbidden) else HTTPStatus.BAD_REQUEST)
        )
        return ws.respond(status, f"{exc}\n")
    except RoomUnavailable as exc:
        return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n")
    if not view:
        return _respond(ws, page(), "text/html; charset=utf-8")
    if view in VIEWS:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        try:
            answer = past_view(room, view, params)
        except CrdtdocError as exc:
            return ws.respond(HTTPStatus.BAD_REQUEST, f"{type(exc).__name__}: {exc}\n")
        return _respond(ws, json.dumps(answer), "application/json")
    try:  # readers skip damaged entries; what still fails gets a readable answer, no crash
        state = room_state(room)
    except CrdtdocError as exc:
        log.error("cannot read room state", extra={"room": name, "error": str(exc)})
        return ws.respond(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot read the room: {exc}\n")
    return _respond(ws, json.dumps(state), "application/json")


def _room_list(hub: HubView, ws: ServerConnection, request: Request) -> Response:
    """`/`: links to the loaded rooms the request's token may see."""
    try:
        grant = authenticate(hub.config.secret, request, None)
    except AuthError as exc:
        return ws.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
    query = urlsplit(request.path).query
    names = [
        n
        for n in sorted(hub.rooms)
        if hub.config.secret is None or (grant is not None and grant.allows_room(n))
    ]
    return _respond(ws, room_list(names, query), "text/html; charset=utf-8")

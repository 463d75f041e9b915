"""The supervision page: what a room holds now, for a person watching a team of agents.

`GET /rooms/<room>` serves one HTML page (plain HTML, CSS and a small script of our own, no build
step) that reads `GET /rooms/<room>/state` once a second and redraws: the agents present, every
artifact (documents as text, task lists as a board by status with contested claims and review
gates marked, specs with conflicting members and a freeze waiting for approvals marked), the
latest changes, and how far behind the hub each agent is (the messages the hub holds for it and
has not sent yet). Each artifact's history (a slider and a list of steps: the artifact as it was
after any of them) and each document's blame open on demand (`crdtdoc.server.web_history`).
Both need the same token as a websocket connection to the room (`?token=`; a read-only token is
enough) when the hub has a secret.

Nothing a room or its agents name reaches a page as markup or script: the room page is static
(its script reads the room from its own URL and shows every name and text from the JSON state
as text), the room list HTML-escapes names, and every HTTP answer carries a strict
Content-Security-Policy that allows only the pages' own inline script and styles, by hash
(`harden`), so an injection that slipped through still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from html import escape
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from websockets.http11 import Request, Response

from crdtdoc.errors import CrdtdocError
from crdtdoc.protocol.presence import parse_presence

if TYPE_CHECKING:
    from crdtdoc.replica import Replica
    from crdtdoc.server.room import Room

FEED_LENGTH = 30


def room_state(room: Room) -> dict[str, Any]:
    """The room as the page shows it (JSON-ready)."""
    replica = room.replica
    now = time.time()
    owner = {client: peer for peer in room.peers for client in peer.awareness_clients}
    present = []
    for entry in room.awareness.values():
        if entry.removed:
            continue
        p = parse_presence(entry.client, entry.state)
        seen = room.presence_seen.get(entry.client)
        peer = owner.get(entry.client)
        # How far behind the hub the agent is: what the hub holds for it, not yet sent (None
        # for agents connected to another hub).
        behind = peer.queued if peer is not None else None
        present.append(
            {
                "agent": p.agent or f"client {entry.client}",
                "status": p.status,
                "task": p.task,
                "seconds_ago": round(now - seen, 1) if seen else None,
                "behind_messages": behind[0] if behind is not None else None,
                "behind_bytes": behind[1] if behind is not None else None,
            }
        )
    artifacts: list[dict[str, Any]] = []
    for name, kind in sorted(replica.artifacts().items()):
        try:
            artifacts.append(_artifact(room, name, kind))
        except CrdtdocError as exc:
            artifacts.append({"name": name, "kind": kind, "error": str(exc)})
    feed = [
        {"agent": c.agent, "artifact": c.artifact, "text": c.describe()}
        for c in replica.changes_since(None)[-FEED_LENGTH:]
    ]
    return {
        "room": room.name,
        "version": replica.version().token(),
        "durable": room.durable.token(),
        "agents": sorted(present, key=lambda p: str(p["agent"])),
        "artifacts": artifacts,
        "changes": list(reversed(feed)),
    }


def _artifact(room: Room, name: str, kind: str) -> dict[str, Any]:
    return artifact_view(room.replica, name, kind)


def artifact_view(replica: Replica, name: str, kind: str) -> dict[str, Any]:
    """One artifact as the page shows it: a document's text, a task list's board (with its
    review gates), a spec's members (with a freeze waiting for approvals)."""
    if kind == "document":
        return {"name": name, "kind": kind, "text": replica.document(name).read()}
    if kind == "tasks":
        return {
            "name": name,
            "kind": kind,
            "tasks": [
                {
                    "id": t.id,
                    "title": t.title,
                    "status": t.status,
                    "assignee": t.assignee,
                    "contested": t.contested,
                    "claimants": t.claimants,
                    "verify": t.verify,
                    "verified_by": t.verified_by,
                }
                for t in replica.tasks(name).list()
            ],
        }
    if kind == "spec":
        spec = replica.spec(name)
        conflicts = spec.conflicts()
        members = []
        for member in spec.members():
            if member in conflicts:
                values = [{"value": v.value, "by": v.agent} for v in conflicts[member]]
                members.append({"member": member, "conflict": True, "values": values})
            else:
                members.append({"member": member, "conflict": False, "value": spec.get(member)})
        proposed = spec.summary().get("freeze_proposed")
        return {
            "name": name,
            "kind": kind,
            "frozen": spec.frozen,
            "members": members,
            "freeze_waits_for": proposed.get("missing") if isinstance(proposed, dict) else None,
        }
    return {"name": name, "kind": kind}


_LIST_STYLE = "body{font:14px system-ui,sans-serif;margin:1.5em}"


def room_list(rooms: list[str], query: str) -> str:
    """`/`: the rooms in memory, each a link to its page (keeping the token). Names are
    HTML-escaped in text and percent-encoded in links."""
    suffix = f"?{query}" if query else ""
    items = "".join(
        f'<li><a href="/rooms/{quote(r, safe="")}{escape(suffix)}">{escape(r)}</a></li>'
        for r in rooms
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>crdtdoc hub</title>'
        f"<style>{_LIST_STYLE}</style></head><body><h1>Rooms</h1>"
        f"<ul>{items or '<li>no room is loaded</li>'}</ul></body></html>"
    )


def page() -> str:
    """The room page: the same static HTML for every room (it fetches `state` with the same
    token every second), so no room name can become markup or script."""
    return _PAGE


def _csp_hash(text: str) -> str:
    """The CSP source that allows one inline `<script>` or `<style>` whose content is `text`."""
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def _inline(tag: str, html: str) -> list[str]:
    """The contents of `html`'s inline `<tag>` elements (attribute-less, as our pages write
    them), exactly as the browser hashes them (read_text already made newlines LF)."""
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)


_PAGE = (Path(__file__).parent / "static" / "room.html").read_text(encoding="utf-8")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",  # nothing else: no images, fonts, frames, plugins, workers
        "script-src " + " ".join(_csp_hash(s) for s in _inline("script", _PAGE)),
        "style-src " + " ".join(_csp_hash(s) for s in [*_inline("style", _PAGE), _LIST_STYLE]),
        "connect-src 'self'",  # the page's fetch of /rooms/<room>/state
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""One policy for every HTTP answer of the hub: its pages' own inline script and styles (by
hash, so no injected or attribute script runs, no 'unsafe-inline'), fetches to the hub itself,
and nothing else. JSON and text answers carry it too, in case a browser renders them."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",  # JSON and text are never sniffed into HTML or script
    "Referrer-Policy": "no-referrer",  # tokens travel in the query string
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Cross-Origin-Resource-Policy": "same-origin",  # no cross-site <script src=.../state>
    "Cache-Control": "no-store",  # room data and token-bearing URLs stay out of caches
}


def harden(_connection: object, _request: Request, response: Response) -> None:
    """`process_response` hook: adds `SECURITY_HEADERS` to every plain HTTP answer (pages,
    JSON, metrics, health, refusals, websockets' own 4xx), and a Bearer challenge to 401s."""
    if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
        return
    for name, value in SECURITY_HEADERS.items():
        if name not in response.headers:
            response.headers[name] = value
    if response.status_code == HTTPStatus.UNAUTHORIZED and "WWW-Authenticate" not in (
        response.headers
    ):
        response.headers["WWW-Authenticate"] = 'Bearer realm="crdtdoc"'

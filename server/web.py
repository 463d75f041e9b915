"""The supervision page: what a room holds now, for a person watching a team of agents.

`GET /rooms/<room>` serves one HTML page (plain HTML, CSS and a small script of our own, no build
step) that reads `GET /rooms/<room>/state` once a second and redraws: the agents present, every
artifact (documents as text, task lists as a board by status with contested claims marked, specs
with conflicting members marked), the latest changes, and how far behind the hub each agent is
(the messages the hub holds for it and has not sent yet). Both need the same token as a websocket
connection to the room (`?token=`; a read-only token is enough) when the hub has a secret.
"""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from crdtdoc.client.presence import parse_presence
from crdtdoc.errors import CrdtdocError

if TYPE_CHECKING:
    from server.room import Room

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
    replica = room.replica
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
        return {"name": name, "kind": kind, "frozen": spec.frozen, "members": members}
    return {"name": name, "kind": kind}


def room_list(rooms: list[str], query: str) -> str:
    """`/`: the rooms in memory, each a link to its page (keeping the token)."""
    suffix = f"?{query}" if query else ""
    items = "".join(
        f'<li><a href="/rooms/{quote(r)}{escape(suffix)}">{escape(r)}</a></li>' for r in rooms
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>crdtdoc hub</title>'
        '</head><body style="font:14px system-ui,sans-serif;margin:1.5em"><h1>Rooms</h1>'
        f"<ul>{items or '<li>no room is loaded</li>'}</ul></body></html>"
    )


def page(room: str) -> str:
    """The page for `room`: it fetches `state` (same token) every second."""
    return _PAGE.replace("__ROOM__", json.dumps(room))


_PAGE = (Path(__file__).parent / "static" / "room.html").read_text(encoding="utf-8")

"""The supervision page's views of the past: an artifact's history (the steps that changed it,
each with the version it led to), the artifact as it was at one of them, and a document's blame.
Served as JSON at `/rooms/<room>/history`, `/at` and `/blame` (`?artifact=NAME`, and `&at=TOKEN`
for a past version), with the same token as the page, computed by the same library calls every
other surface uses (`Replica.history`, `Replica.at`, `Document.blame`) on the hub's replica,
which keeps history unless the hub runs with `--no-history`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdtdoc.errors import UsageError
from crdtdoc.replica import KIND_LABELS
from crdtdoc.server.web import artifact_view

if TYPE_CHECKING:
    from crdtdoc.server.room import Room

VIEWS = ("history", "at", "blame")
HISTORY_LIMIT = 100
"""Steps the page's history list shows (the most recent)."""
MAX_STRUCTS = 10_000
"""The largest room (in structs) whose past the page reads: the hub computes it on its event
loop (a second or so at this size), so a larger room's past is read where it costs only its
reader, with `crdtdoc history` and `crdtdoc doc blame`."""


def past_view(room: Room, view: str, params: dict[str, str]) -> dict[str, Any]:
    """The JSON of one view (`VIEWS`); `UsageError` (a `CrdtdocError`) for a bad request."""
    replica = room.replica
    structs = len(replica.room_history().doc.items)  # (read once, kept for the views)
    if structs > MAX_STRUCTS:
        raise UsageError(
            f"the room holds {structs:,} structs, more than the page reads the past of "
            f"({MAX_STRUCTS:,}): it would hold the hub up; use crdtdoc history / doc blame"
        )
    name = params.get("artifact", "")
    if not name:
        raise UsageError("name the artifact: ?artifact=NAME")
    kind = replica.artifacts().get(name)
    if kind is None:
        raise UsageError(f"this room has no artifact named {name!r}")
    at = params.get("at") or None
    if view == "history":
        entries = replica.history(name, limit=HISTORY_LIMIT)
        return {
            "artifact": name,
            "entries": [
                {"version": e.version, "agent": e.agent, "lines": [c.describe() for c in e.changes]}
                for e in entries
            ],
        }
    if view == "blame":
        if kind != "document":
            raise UsageError(f"{name!r} is a {KIND_LABELS.get(kind, kind)}: blame reads documents")
        spans = replica.document(name).blame(at=at)
        return {
            "artifact": name,
            "spans": [{"text": s.text, "agent": s.agent, "version": s.version} for s in spans],
        }
    source = replica.at(at) if at else replica
    return {"artifact": name, "at": at, "view": artifact_view(source, name, kind)}

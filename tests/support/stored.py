"""A room as a hub's database holds it, read directly (no hub involved): what survived."""

from __future__ import annotations

from pathlib import Path

from crdtdoc import Replica
from crdtdoc.server.store import SqliteStore


def stored_replica(db: Path, room: str) -> Replica:
    """The room as the hub's SQLite database holds it."""
    store = SqliteStore(str(db))
    try:
        stored = store.load(room)
    finally:
        store.close()
    replica = Replica("reader")
    # Trusted, as the hub loads it: the semantic gate judged each update on arrival, and a
    # snapshot orders items by client, not by arrival (a root's first content can differ).
    if stored.snapshot is not None:
        replica.apply_update(stored.snapshot, trusted=True)
    for update in stored.updates:
        replica.apply_update(update, trusted=True)
    return replica


def stored_shared_replica(pg_url: str, room: str) -> Replica:
    """The room as the shared PostgreSQL database holds it."""
    import psycopg

    replica = Replica("reader")
    with psycopg.connect(pg_url) as db:
        row = db.execute("SELECT data FROM crdtdoc_snapshots WHERE room = %s", (room,)).fetchone()
        if row is not None:
            replica.apply_update(bytes(row[0]), trusted=True)  # as a hub loads it
        for (data,) in db.execute(
            "SELECT data FROM crdtdoc_updates WHERE room = %s ORDER BY seq", (room,)
        ):
            replica.apply_update(bytes(data), trusted=True)
    return replica

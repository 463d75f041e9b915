"""What the engine answers about the past: a document as it was at a version, and where items
stand in a text.

A `Version` is a Yjs snapshot (a state vector and a delete set), so the engine rebuilds the
document as it was at one from a document that still holds the content of everything live then.
Only a document that keeps history (no garbage collection, `Replica(history=True)`) holds the
text of what was deleted since; yrs panics when asked for a snapshot of any other, and silently
shows nothing where content it dropped was live. So the content is checked here first, on
crdtdoc's own parse, and the engine is asked only when every id live at the version still holds
what was written.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Snapshot, StickyIndex, Text

from crdtdoc.contents import DELETED, GC, SKIP
from crdtdoc.encoding import Encoder
from crdtdoc.errors import HistoryUnavailable
from crdtdoc.updates import parse_update, write_state_vector
from crdtdoc.versions import Version


def snapshot_bytes(version: Version) -> bytes:
    """`version` as a Yjs snapshot: its delete set, then its state vector."""
    enc = Encoder()
    version.deleted.encode_into(enc)
    write_state_vector(enc, version.clocks)
    return enc.to_bytes()


def unheld(full_update: bytes, version: Version) -> int:
    """How many ids live at `version` (written by then, not deleted by then) the document
    `full_update` no longer holds the content of (kept as deleted or collected)."""
    parsed = parse_update(full_update, details=True)
    clocks, deleted = version.clocks, version.deleted
    missing = 0
    for item in parsed.items or ():
        if item.content not in (DELETED, GC, SKIP):
            continue
        end = min(item.clock + item.length, clocks.get(item.client, 0))
        for lo, hi in deleted.gaps(item.client, item.clock, end) if item.clock < end else ():
            missing += hi - lo
    return missing


def past_update(doc: Doc[Any], now: Version, version: Version) -> bytes:
    """The whole document as it was at `version`, from the engine document `doc` (at `now`).
    Raises `HistoryUnavailable` unless `doc` has seen `version` and still holds its content."""
    if not version <= now:
        raise HistoryUnavailable(
            "this replica has not seen that version (it is not before or equal to the "
            "replica's own); sync first, or ask a replica that has seen it"
        )
    full = doc.get_update()
    missing = unheld(full, version)
    if missing:
        raise HistoryUnavailable(
            f"this replica no longer holds what was live at that version ({missing} deleted "
            "item(s) were collected): history needs Replica(history=True) from the start, "
            "and a hub that keeps history (crdtdoc serve keeps it unless --no-history)"
        )
    try:
        past = Doc.from_snapshot(Snapshot.decode(snapshot_bytes(version)), doc)
        return past.get_update()
    except BaseException as exc:  # a PanicException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise HistoryUnavailable(f"the engine could not rebuild that version: {exc}") from None


def _sticky(client: int, clock: int) -> bytes:
    """A Yjs relative position just before the item with id `client:clock`."""
    enc = Encoder()
    for n in (0, client, clock):
        enc.write_var_uint(n)
    enc.write_var_int(0)
    return enc.to_bytes()


def text_offsets(text: Text, ids: list[tuple[int, int]]) -> list[int]:
    """The engine offset (UTF-8 bytes, one per embed) of each live item id in `text`."""
    return [StickyIndex.decode(_sticky(c, k), text).get_index() for c, k in ids]

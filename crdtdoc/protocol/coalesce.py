"""Sync updates waiting for one connection, sent as one: what a hub's fan-out costs per message.

Under a burst, a slow reader's queue holds several `SyncUpdate` messages in a row. Each message
costs the sender a websocket frame, a write and the bookkeeping around them, which was most of a
hub's CPU in a burst of small edits. Yjs updates merge (Y.mergeUpdates; pycrdt's
`merge_updates`), and applying the merge does what applying each in turn does as long as no two
of them carry the same id: where two do, the merge keeps the longer struct, while in turn the
first one applied wins. A replica announces what its engine integrated (`Replica.on_update`),
never ids it already held, so the updates a hub relays never share an id and a run of them can
leave as one. Only runs of sync updates are merged; every other message keeps its place, so the
receiver sees everything in the order it was queued.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrdt import merge_updates

from crdtdoc.errors import CrdtdocError
from crdtdoc.protocol.messages import (
    SYNC_UPDATE,
    SyncUpdate,
    carried_update,
    encode_message,
)
from crdtdoc.safe_read import engine_failed

MAX_MERGED_BYTES = 256 * 1024
"""Updates are merged while their run stays under this many bytes (a larger one goes alone)."""
MAX_MERGED_UPDATES = 64
"""And while it holds at most this many: merging grows faster than the updates merged (one
client's keystrokes: 8 ms for 1,000, 393 ms for 8,000), and 64 already save 63 sends."""


def _update_of(message: bytes) -> bytes | None:
    """The update a sync update message carries, or None for any other message (and for one
    that does not read as a sync update: it is sent as it is)."""
    if len(message) < 3 or message[1] != SYNC_UPDATE:
        return None
    update = carried_update(message)
    return None if update is None else bytes(update)


def coalesce(messages: Sequence[bytes], max_bytes: int = MAX_MERGED_BYTES) -> list[bytes]:
    """`messages` with each run of consecutive sync updates (up to `max_bytes` together)
    merged into one sync update. A run that cannot be merged (one the engine refuses to
    merge) is left as it was."""
    if len(messages) < 2:  # a peer that keeps up: one message per turn of its writer
        return list(messages)
    out: list[bytes] = []
    run: list[bytes] = []  # the messages of the current run
    updates: list[bytes] = []  # what they carry
    size = 0
    for message in messages:
        update = _update_of(message)
        if run and (
            update is None or size + len(message) > max_bytes or len(run) >= MAX_MERGED_UPDATES
        ):
            out.extend(_merged(run, updates))
            run, updates, size = [], [], 0
        if update is None:
            out.append(message)
        else:
            run.append(message)
            updates.append(update)
            size += len(message)
    out.extend(_merged(run, updates))
    return out


def _merged(run: list[bytes], updates: list[bytes]) -> list[bytes]:
    if len(run) < 2:
        return run
    try:
        return [encode_message(SyncUpdate(merge_updates(*updates)))]
    except BaseException as exc:  # pycrdt's PanicException is a BaseException
        if not (isinstance(exc, CrdtdocError) or engine_failed(exc)):
            raise
        return run  # sent one by one, as queued

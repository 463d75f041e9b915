"""Saving a replica to a local file and restoring it, so a crashed agent restarts with its work.

The file holds the document state, whatever waits in the causal buffer, and the agent name, as
msgpack behind a magic header. It is written to a temporary file, synced and renamed, so a crash
mid-save leaves the previous file intact. A restored replica gets a fresh client id: reusing one
would let two different histories claim the same ids.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import msgpack

from crdtdoc.errors import StorageError

MAGIC = b"CRDTDOC-REPLICA\x01"
FORMAT = 1


@dataclass(frozen=True)
class SavedReplica:
    """What a replica file holds: the agent, the client id it wrote under, its whole document
    as one Yjs update and what waited in its causal buffer (`Replica.save` and `Replica.load`
    turn a replica into this and back)."""

    agent: str
    client_id: int | None
    state: bytes
    pending: list[bytes] = field(default_factory=list)


def write_saved(saved: SavedReplica, path: str | os.PathLike[str]) -> None:
    """Writes `saved` to `path` atomically: a temporary file, synced, renamed, directory synced."""
    record = {
        "format": FORMAT,
        "agent": saved.agent,
        "client_id": saved.client_id,
        "state": saved.state,
        "pending": saved.pending,
    }
    blob = MAGIC + msgpack.packb(record, use_bin_type=True)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".crdtdoc-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot save replica to {path}: {exc.strerror or exc}") from None


def read_saved(path: str | os.PathLike[str]) -> SavedReplica:
    """Reads a replica file; `StorageError` when it is missing, foreign or damaged."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise StorageError(f"cannot read replica file {path}: {exc.strerror or exc}") from None
    if not blob.startswith(MAGIC):
        raise StorageError(f"{path} is not a saved crdtdoc replica (bad header)")
    try:
        record: Any = msgpack.unpackb(blob[len(MAGIC) :], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad bytes
        raise StorageError(f"{path} is damaged: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StorageError(f"{path} has an unknown format; this crdtdoc reads format {FORMAT}")
    state, pending, agent = record.get("state"), record.get("pending", []), record.get("agent")
    client_id = record.get("client_id")
    if not isinstance(state, bytes) or not isinstance(agent, str) or not isinstance(pending, list):
        raise StorageError(f"{path} is damaged: missing fields")
    return SavedReplica(
        agent,
        client_id if isinstance(client_id, int) else None,
        state,
        [part for part in pending if isinstance(part, bytes)],
    )

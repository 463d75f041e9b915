"""Saving a replica to a local file and restoring it, so a crashed agent restarts with its work.

The file holds the document state, whatever waits in the causal buffer, and the agent name, as
msgpack behind a magic header. It is written to a temporary file, synced and renamed, so a crash
mid-save leaves the previous file intact. A restored replica gets a fresh client id: reusing one
would let two different histories claim the same ids.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any

import msgpack

from crdtdoc.errors import CrdtdocError, StorageError
from crdtdoc.updates import parse_update

if TYPE_CHECKING:
    from crdtdoc.replica import Replica

MAGIC = b"CRDTDOC-REPLICA\x01"
FORMAT = 1


def save_replica(replica: Replica, path: str | os.PathLike[str]) -> None:
    pending = replica.pending_entries()
    record = {
        "format": FORMAT,
        "agent": replica.agent,
        "client_id": replica.client_id,
        "state": replica.encode_update(),
        "pending": pending,
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


def load_replica(
    cls: type[Replica], path: str | os.PathLike[str], *, agent: str | None = None
) -> Replica:
    from crdtdoc.replica import new_client_id

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
    state, pending = record.get("state"), record.get("pending", [])
    name = agent or record.get("agent")
    if not isinstance(state, bytes) or not isinstance(name, str) or not isinstance(pending, list):
        raise StorageError(f"{path} is damaged: missing fields")
    try:
        used = set(parse_update(state).structs) | {record.get("client_id")}
        fresh = cls(agent=name, client_id=new_client_id({c for c in used if isinstance(c, int)}))
        fresh.apply_update(state)
        for part in pending:
            if isinstance(part, bytes):
                fresh.apply_update(part)
    except CrdtdocError as exc:
        raise StorageError(f"{path} holds data that does not apply: {exc}") from None
    return fresh

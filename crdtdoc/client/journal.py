"""`Journal`: a local file that keeps a connected replica's data across a crash of the agent.

The file is a magic header, then records: a varuint length, the bytes of one Yjs update, and a
CRC-32 of them. Local changes are appended and fsynced before the call that made them returns;
updates from the hub are appended without fsync (the hub has them). A torn last record (a crash
mid-append) is detected by its length or checksum and ignored. When the file grows past twice its
last snapshot, it is rewritten atomically as one snapshot record.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import BinaryIO

from crdtdoc.encoding import Decoder, encode_var_uint
from crdtdoc.errors import StorageError

log = logging.getLogger("crdtdoc.client.journal")

MAGIC = b"CRDTDOC-JOURNAL\x01"
MIN_COMPACT_BYTES = 1024 * 1024


def read_journal(path: str) -> list[bytes]:
    """The updates recorded in `path` (none if it does not exist); a torn tail is dropped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot read journal {path}: {exc}") from None
    if not data.startswith(MAGIC):
        raise StorageError(f"{path} is not a crdtdoc journal (wrong header)")
    dec = Decoder(data[len(MAGIC) :], StorageError)
    updates = []
    while not dec.at_end():
        start = dec.pos
        try:
            update = dec.read_var_bytes()
            crc = int.from_bytes(dec.read_bytes(4), "big")
        except StorageError:
            log.warning("journal ends in a torn record; ignoring it", extra={"path": path})
            break
        if zlib.crc32(update) != crc:
            log.warning(
                "journal record fails its checksum; ignoring it and what follows",
                extra={"path": path, "offset": start},
            )
            break
        updates.append(update)
    return updates


def _record(update: bytes) -> bytes:
    return encode_var_uint(len(update)) + update + zlib.crc32(update).to_bytes(4, "big")


class Journal:
    """Appends updates to a journal file (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._snapshot_bytes = 0

    def open(self, snapshot: bytes) -> None:
        """Starts the journal afresh from `snapshot` (the replica's whole state)."""
        self._rewrite(snapshot)

    def append(self, update: bytes, *, sync: bool) -> None:
        if self._file is None:
            return
        try:
            self._file.write(_record(update))
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise StorageError(f"cannot append to journal {self.path}: {exc}") from None

    def needs_compaction(self) -> bool:
        if self._file is None:
            return False
        return self._file.tell() > max(MIN_COMPACT_BYTES, 2 * self._snapshot_bytes)

    def compact(self, snapshot: bytes) -> None:
        self._rewrite(snapshot)

    def _rewrite(self, snapshot: bytes) -> None:
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC + _record(snapshot))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            if self._file is not None:
                self._file.close()
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open for appends
        except OSError as exc:
            raise StorageError(f"cannot write journal {self.path}: {exc}") from None
        self._snapshot_bytes = len(snapshot)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

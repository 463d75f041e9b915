from __future__ import annotations

from pathlib import Path

import pytest

from crdtdoc import Replica
from crdtdoc.client.journal import MAGIC, Journal, read_journal
from crdtdoc.errors import StorageError


def _updates(n: int) -> list[bytes]:
    r = Replica("a")
    out: list[bytes] = []
    r.on_update(lambda u, local: out.append(u))
    for i in range(n):
        r.document("d").append(f"{i} ")
    return out


def test_records_round_trip_and_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal(path)
    journal.open(b"\x00\x00")
    updates = _updates(5)
    for u in updates:
        journal.append(u, sync=True)
    journal.close()
    assert read_journal(path) == [b"\x00\x00", *updates]
    data = Path(path).read_bytes()
    for cut in range(len(MAGIC), len(data)):  # a crash at any byte keeps every whole record
        Path(path).write_bytes(data[:cut])
        kept = read_journal(path)
        assert kept == [b"\x00\x00", *updates][: len(kept)]
    corrupted = bytearray(data)
    corrupted[-6] ^= 0xFF  # inside the last record: its checksum no longer matches
    Path(path).write_bytes(bytes(corrupted))
    assert read_journal(path) == [b"\x00\x00", *updates[:-1]]


def test_missing_file_is_empty_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    assert read_journal(str(tmp_path / "none")) == []
    (tmp_path / "other").write_bytes(b"not a journal")
    with pytest.raises(StorageError, match="not a crdtdoc journal"):
        read_journal(str(tmp_path / "other"))


def test_compaction_rewrites_the_file_as_one_snapshot(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal(path)
    journal.open(b"\x00\x00")
    big = b"x" * 300_000
    for _ in range(4):
        journal.append(big, sync=False)
    assert journal.needs_compaction()
    journal.compact(b"snapshot")
    journal.append(b"after", sync=True)
    journal.close()
    assert read_journal(path) == [b"snapshot", b"after"]

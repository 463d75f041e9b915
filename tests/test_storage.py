"""Saving and loading: an agent that crashes restarts with its unsent work, under a fresh id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crdtdoc import Replica, StorageError


def test_save_and_load_keep_content_pending_data_and_agent(tmp_path: Path) -> None:
    a = Replica("alice", client_id=1)
    log: list[bytes] = []
    a.on_update(lambda u, local: log.append(u))
    a.document("d").insert(0, "one")
    a.document("d").insert(3, " two")
    a.map("m").set("n", 7)
    b = Replica("bob")
    b.apply_update(log[0])
    b.document("d").insert(0, "bob: ")
    b.apply_update(log[-1])  # waits: depends on log[1]
    path = tmp_path / "bob.replica"
    b.save(str(path))
    restored = Replica.load(str(path))
    assert restored.agent == "bob"
    assert restored.client_id != b.client_id
    assert restored.client_id not in b.version().clocks
    assert restored.document("d").read() == b.document("d").read()
    assert restored.version() == b.version()
    assert restored.pending().updates == b.pending().updates == 1
    restored.apply_update(log[1])
    assert not restored.pending()
    assert restored.map("m").get("n") == 7
    restored.document("d").insert(0, ">")
    assert restored.agents()[restored.client_id] == "bob"


def test_a_held_deletion_survives_save_and_load(tmp_path: Path) -> None:
    a = Replica("a")
    a.document("d").insert(0, "hello")
    b = Replica("b")
    b.apply_update(a.encode_update())
    mark = b.version()
    b.document("d").delete(0, 1)
    c = Replica("c")
    c.apply_update(b.encode_update(mark))  # the deletion, without the text it deletes
    assert c.pending().deletions
    path = tmp_path / "c.replica"
    c.save(str(path))
    restored = Replica.load(str(path))
    assert restored.pending().deletions == c.pending().deletions
    restored.apply_update(a.encode_update())
    assert restored.document("d").read() == "ello"
    assert not restored.pending()


def test_a_killed_agent_restarts_with_its_unsent_work(tmp_path: Path) -> None:
    path = tmp_path / "agent.replica"
    script = f"""
import os, signal
from crdtdoc import Replica
r = Replica("worker")
r.document("notes").insert(0, "written offline")
r.save({str(path)!r})
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    restored = Replica.load(str(path))
    assert restored.document("notes").read() == "written offline"
    peer = Replica("peer")
    peer.apply_update(restored.encode_update())  # the unsent work can now be sent
    assert peer.document("notes").read() == "written offline"


def test_repeated_restarts_never_reuse_a_client_id(tmp_path: Path) -> None:
    path = str(tmp_path / "r")
    r = Replica("a")
    ids = {r.client_id}
    for i in range(5):
        r.document("d").insert(0, str(i))
        r.save(path)
        r = Replica.load(path)
        assert r.client_id not in ids
        ids.add(r.client_id)
    assert r.document("d").read() == "43210"


@pytest.mark.parametrize(
    "blob",
    [b"", b"not a replica", b"CRDTDOC-REPLICA\x01\xc1", b"CRDTDOC-REPLICA\x01\x90"],
)
def test_damaged_files_raise_storage_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(blob)
    with pytest.raises(StorageError):
        Replica.load(str(path))


def test_a_file_with_invalid_update_bytes_is_refused(tmp_path: Path) -> None:
    import msgpack

    path = tmp_path / "bad"
    record = {"format": 1, "agent": "a", "client_id": 1, "state": b"\xff\xff", "pending": []}
    path.write_bytes(b"CRDTDOC-REPLICA\x01" + msgpack.packb(record))
    with pytest.raises(StorageError, match="does not apply"):
        Replica.load(str(path))


def test_missing_file_and_unwritable_place_raise_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        Replica.load(str(tmp_path / "missing"))
    with pytest.raises(StorageError, match="cannot save"):
        Replica("a").save(str(tmp_path / "no" / "such" / "dir" / "f"))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".crdtdoc-")]

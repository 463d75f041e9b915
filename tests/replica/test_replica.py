"""`crdtdoc.replica.replica`: the public `Replica`. Local transactions (nested, announced even
when the block raises, rebuilt when the engine panics), guarded writes and notes, the deletions
log that attributes deletions, observers in artifact terms, saving and loading, misuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrdt import Array, Map, Text

from crdtdoc import (
    CrdtdocError,
    InvalidUpdate,
    NotFound,
    Replica,
    ReplicaRebuilt,
    StaleRead,
    StorageError,
    UsageError,
    WrongKind,
)
from crdtdoc.encoding import Decoder
from crdtdoc.idset import IdSet
from crdtdoc.replica import artifact_names
from crdtdoc.roots import DELETIONS_ROOT, NOTES_ROOT
from crdtdoc.updates import MAX_CLIENT_ID, MAX_CLOCK


def test_local_panic_never_escapes_and_the_replica_is_rebuilt() -> None:
    r = Replica("a")
    doc = r.document("d")
    doc.insert(0, "héllo")
    before = r.version()
    # A real pycrdt panic: removing past the end removes 3 elements, then panics.
    with pytest.raises(ReplicaRebuilt, match="rebuilt"), r.transaction():
        del r.artifact_root("d", Text)[3:100]
    assert doc.read() == "héllo"
    assert r.version() == before
    doc.insert(5, "!")  # and it still works
    assert doc.read() == "héllo!"
    other = Replica("b")
    other.apply_update(r.encode_update())
    assert other.document("d").read() == "héllo!"


def test_a_block_that_raises_still_announces_what_it_committed() -> None:
    r = Replica("a")
    updates: list[bytes] = []
    r.on_update(lambda u, local: updates.append(u))
    with pytest.raises(RuntimeError, match="agent crashed"), r.transaction():
        r.document("d").insert(0, "half done")
        raise RuntimeError("agent crashed")
    assert r.document("d").read() == "half done"
    peer = Replica("peer")
    for u in updates:
        peer.apply_update(u)
    assert peer.document("d").read() == "half done"


def test_nested_local_transactions_make_one_update() -> None:
    r = Replica("a")
    updates: list[bytes] = []
    r.on_update(lambda u, local: updates.append(u))
    with r.transaction():
        r.document("d").insert(0, "a")
        with r.transaction():
            r.document("d").insert(1, "b")
    assert len(updates) == 1


def test_misuse_gets_clear_errors() -> None:
    with pytest.raises(CrdtdocError, match="agent"):
        Replica("")
    with pytest.raises(CrdtdocError, match="client_id"):
        Replica("a", client_id=2**53)
    r = Replica("a")
    with pytest.raises(CrdtdocError, match="inside a local transaction"), r.transaction():
        r.apply_update(b"\x00\x00")
    r.map("m")
    with pytest.raises(CrdtdocError, match="is a map; it cannot also be used as a document"):
        r.document("m")
    with pytest.raises(CrdtdocError, match="reserved"):
        r.document("__crdtdoc_agents")
    with pytest.raises(InvalidUpdate):
        r.encode_update(b"\xff")


def test_map_values_round_trip_through_another_replica() -> None:
    a = Replica("a")
    values = {
        "i": 42,
        "neg": -7,
        "big": 2**53 - 1,
        "f": 2.5,
        "s": "x",
        "n": None,
        "b": True,
        "l": [1, 2, {"x": 3}],
        "d": {"k": [True, None]},
    }
    for k, v in values.items():
        a.map("m").set(k, v)
    b = Replica("b")
    b.apply_update(a.encode_update())
    got = b.map("m").to_dict()
    assert got == values
    assert type(got["i"]) is int and type(got["l"][0]) is int and type(got["f"]) is float
    assert isinstance(b.map("m")._root()["i"], float)  # what pycrdt alone would give
    assert Map  # the raw type is plain Y.Map


def _synced(a: Replica, b: Replica) -> None:
    b.apply_update(a.encode_update(b.version()))
    a.apply_update(b.encode_update(a.version()))


def test_a_guarded_transaction_refuses_a_stale_read_of_its_artifacts_only() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("plan").insert(0, "step 1\n")
    _synced(alice, bob)
    read = bob.version()
    alice.document("plan").append("step 2\n")
    alice.map("notes").set("k", "v")
    _synced(alice, bob)
    before = bob.version()
    stale = pytest.raises(StaleRead, match=r"1 change\(s\).*alice")
    with stale as raised, bob.transaction(expect=read.token(), on=["plan"]):
        bob.document("plan").append("never written\n")
    assert [c.artifact for c in raised.value.changes] == ["plan"]
    assert bob.version() == before  # refused before anything was written
    with bob.transaction(expect=read, on=[bob.document("other")]):  # others touched no "other"
        bob.document("other").insert(0, "fine")
    mine = bob.version()
    bob.document("plan").append("bob's own\n")
    with bob.transaction(expect=mine, on=["plan"]):  # its own changes never make it stale
        bob.document("plan").append("again\n")
    with pytest.raises(UsageError, match="note"), bob.transaction(note=""):
        pass


def test_a_note_travels_with_the_transaction_naming_its_artifacts() -> None:
    r = Replica("alice")
    with r.transaction(note="fix the typo", on=["doc", r.map("m")]):
        r.document("doc").insert(0, "text")
    notes = [dict(n) for n in r._doc.get(NOTES_ROOT, type=Array)]
    assert len(notes) == 1
    assert notes[0]["by"] == "alice" and notes[0]["note"] == "fix the typo"
    assert notes[0]["artifacts"] == ["doc", "m"]
    with pytest.raises(UsageError, match="on= takes artifacts or their names"):
        artifact_names([3])


def _ids(entry: bytes) -> IdSet:
    decoder = Decoder(bytes(entry), InvalidUpdate)
    return IdSet.decode_from(decoder, max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID)


def test_a_run_of_deletions_keeps_one_log_entry_and_stays_attributed() -> None:
    r = Replica("typist")
    r.document("d").insert(0, "hello world")
    typed = r.version()
    for _ in range(5):
        r.document("d").delete(0, 1)  # backspacing: one commit each
    live = [_ids(e) for e in r._doc.get(DELETIONS_ROOT, type=Array)]
    assert len(live) == 1 and live[0].range_count() == 1 and len(live[0]) == 5
    reader = Replica("reader")
    reader.apply_update(r.encode_update())
    deletions = [c for c in reader.changes_since(typed) if c.kind == "delete" and c.artifact == "d"]
    assert deletions and {c.agent for c in deletions} == {"typist"}
    assert sum(c.length for c in deletions) == 5


def test_save_and_load_keep_content_and_waiting_data_under_a_fresh_client_id(
    tmp_path: Path,
) -> None:
    author = Replica("author", client_id=1)
    log: list[bytes] = []
    author.on_update(lambda u, local: log.append(u))
    author.document("d").insert(0, "ab")
    author.document("d").insert(2, "cd")
    r = Replica("saver", client_id=2)
    r.document("mine").insert(0, "local")
    r.apply_update(log[1])  # waits for log[0]
    r.save(str(tmp_path / "r.crdt"))
    loaded = Replica.load(str(tmp_path / "r.crdt"))
    assert loaded.agent == "saver" and loaded.client_id not in (1, 2)
    assert loaded.document("mine").read() == "local" and loaded.pending().updates == 1
    loaded.apply_update(log[0])
    assert loaded.document("d").read() == "abcd"
    (tmp_path / "bad.crdt").write_bytes(b"not a saved replica")
    with pytest.raises(StorageError):
        Replica.load(str(tmp_path / "bad.crdt"))


def test_require_tells_a_missing_artifact_from_an_empty_one() -> None:
    r = Replica("r")
    r.document("notes").insert(0, "x")
    r.map("config").set("k", 1)
    r.require("notes", "document")
    with pytest.raises(NotFound, match=r"no document named 'nots' \(its documents: notes\)"):
        r.require("nots", "document")
    with pytest.raises(WrongKind):
        r.require("config", "document")


def test_observe_reports_changes_in_artifact_terms_until_unsubscribed() -> None:
    a, b = Replica("alice"), Replica("bob")
    seen: list[list[tuple[str | None, str, str]]] = []
    stop = b.observe(lambda changes: seen.append([(c.agent, c.artifact, c.kind) for c in changes]))
    a.document("d").insert(0, "hi")
    b.apply_update(a.encode_update())
    b.map("m").set("k", 1)
    assert seen == [[("alice", "d", "insert")], [("bob", "m", "set")]]
    stop()
    b.map("m").set("k", 2)
    assert len(seen) == 2

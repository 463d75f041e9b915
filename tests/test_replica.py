"""Replica: validated, causally ordered application, and recovery when the engine fails."""

from __future__ import annotations

import gc
import random
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from crdtdoc import (
    CrdtdocError,
    InvalidUpdate,
    PendingLimitExceeded,
    Replica,
    ReplicaLimits,
    ReplicaRebuilt,
)
from crdtdoc.encoding import Encoder
from crdtdoc.updates import deletes_only, parse_update
from tests.support.builders import content, writer_stream


def _in_order(updates: list[bytes]) -> Replica:
    reference = Replica("reference")
    for u in updates:
        reference.apply_update(u)
    return reference


@settings(max_examples=150)
@given(
    st.integers(0, 10_000),
    st.integers(2, 4),
    st.randoms(use_true_random=False),
    st.floats(0, 0.5),
)
def test_any_permutation_with_duplicates_converges(
    seed: int, writers: int, rng: random.Random, dup_rate: float
) -> None:
    updates = writer_stream(seed, writers=writers, steps=30)
    reference = _in_order(updates)
    delivery = list(updates) + [u for u in updates if rng.random() < dup_rate]
    rng.shuffle(delivery)
    replica = Replica("shuffled")
    for u in delivery:
        replica.apply_update(u)
    assert not replica.pending(), f"seed={seed}: still pending {replica.pending()}"
    assert content(replica) == content(reference), f"seed={seed}"
    assert replica.version() == reference.version(), f"seed={seed}"


def test_plain_pycrdt_does_not_converge_out_of_order() -> None:
    """The hazard this replica exists for (DESIGN §4): if this starts failing, re-measure."""
    updates = writer_stream(7, writers=3, steps=40)
    reference = content(_in_order(updates))[0]
    rng = random.Random(7)
    plain_results = set()
    ours_results = set()
    for _ in range(30):
        delivery = list(updates)
        rng.shuffle(delivery)
        doc: Doc = Doc()
        for u in delivery:
            doc.apply_update(u)
        plain_results.add(str(doc.get("text", type=Text)))
        replica = Replica("r")
        for u in delivery:
            replica.apply_update(u)
        ours_results.add(replica.document("text").read())
    assert len(plain_results) > 1
    assert ours_results == {reference}


def test_out_of_order_update_waits_and_pending_names_the_gap() -> None:
    a = Replica("a", client_id=1)
    log: list[bytes] = []
    a.on_update(lambda u, local: log.append(u))
    doc = a.document("d")
    doc.insert(0, "one")
    doc.insert(3, " two")
    doc.insert(7, " three")
    b = Replica("b")
    b.apply_update(log[2])
    pending = b.pending()
    assert pending.updates == 1
    assert pending.missing.client_ranges(1)[0][0] == 0
    assert b.document("d").read() == ""
    assert b.version().clocks == {}  # nothing applied, nothing pretended
    b.apply_update(log[1])
    assert b.pending().updates == 2
    b.apply_update(log[0])
    assert not b.pending()
    assert b.document("d").read() == "one two three"
    assert b.version() == a.version()


def test_a_deletion_waits_for_its_target_without_holding_back_inserts() -> None:
    a = Replica("a", client_id=1)
    log: list[bytes] = []
    a.on_update(lambda u, local: log.append(u))
    a.document("d").insert(0, "hello")  # log[0]
    b = Replica("b", client_id=2)
    b.apply_update(log[0])
    b_log: list[bytes] = []
    b.on_update(lambda u, local: b_log.append(u) if local else None)
    with b.transaction():
        b.document("d").insert(5, "!")
        b.document("d").delete(0, 1)
    c = Replica("c")
    # c has not got "hello" yet: b's insert depends on it and waits, so does the deletion.
    c.apply_update(b_log[0])
    assert c.pending().updates == 1 and c.pending().deletions
    c.apply_update(log[0])
    assert c.document("d").read() == "ello!"
    assert not c.pending()


def test_a_long_backlog_delivered_in_reverse_drains_completely() -> None:
    writer = Replica("w")
    log: list[bytes] = []
    writer.on_update(lambda u, local: log.append(u))
    doc = writer.document("d")
    for i in range(3000):
        doc.insert(i // 2, "ab"[i % 2])
    reader = Replica("r")
    for u in reversed(log[1:]):
        reader.apply_update(u)
    assert reader.pending().updates == len(log) - 1
    assert reader.document("d").read() == ""
    reader.apply_update(log[0])
    assert not reader.pending()
    assert reader.document("d").read() == doc.read()
    assert reader.version() == writer.version()
    assert not reader._buffer and not reader._buffer._filed  # no stale wake-up entries left


def test_bad_bytes_raise_and_leave_the_replica_exactly_as_it_was() -> None:
    a = Replica("a")
    a.document("d").insert(0, "keep me")
    other = Replica("o", client_id=77)
    other.document("d").insert(0, "x")
    a.apply_update(other.encode_update())
    before = (a.version(), content_of(a), a.pending())
    for bad in [b"", b"\x01", b"\xff" * 20, a.encode_update()[:-2], a.encode_update() + b"\x00"]:
        with pytest.raises(InvalidUpdate):
            a.apply_update(bad)
        assert (a.version(), content_of(a), a.pending()) == before


def content_of(r: Replica) -> str:
    return r.document("d").read()


def test_duplicates_are_dropped_without_touching_the_engine() -> None:
    a = Replica("a")
    a.document("d").insert(0, "hi")
    b = Replica("b")
    calls: list[bytes] = []
    b.on_update(lambda u, local: calls.append(u))
    update = a.encode_update()
    b.apply_update(update)
    b.apply_update(update)
    b.apply_update(update)
    assert len(calls) == 1
    assert b.document("d").read() == "hi"


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


def _item_with_parent(parent: tuple[int, int]) -> bytes:
    enc = Encoder()
    for n in (1, 1, 55, 0, 4, 0, parent[0], parent[1]):  # one ContentString under a nested parent
        enc.write_var_uint(n)
    enc.write_var_string("x")
    enc.write_var_uint(0)
    return enc.to_bytes()


def test_engine_refusal_mid_apply_rebuilds_and_raises_invalid_update() -> None:
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "hello")
    before = (r.version(), r.document("t").read(), r.encode_update())
    # Well-formed bytes whose parent id names a string item: yrs fails while applying.
    bad = _item_with_parent((1, 0))
    parse_update(bad)
    with pytest.raises(InvalidUpdate, match="semantic rule 'parent'"):
        r.apply_update(bad)  # the semantic gate refuses it before the engine sees it
    assert (r.version(), r.document("t").read(), r.encode_update()) == before
    with pytest.raises(InvalidUpdate, match="refused"):
        r.apply_update(bad, trusted=True)  # past the gate, the engine refuses it mid-apply
    assert (r.version(), r.document("t").read(), r.encode_update()) == before
    r.document("t").insert(5, "!")
    assert r.document("t").read() == "hello!"


def test_a_refused_buffered_update_does_not_strand_the_rest() -> None:
    author = Replica("author", client_id=1)
    author.document("t").insert(0, "hello")
    bad = _item_with_parent((1, 3))  # waits for 1:3, which will be a string: yrs refuses it
    good = Replica("other", client_id=2)
    good.apply_update(author.encode_update())
    good.document("t").insert(5, "!")
    good_update = good.encode_update(author.version())  # also waits for client 1
    r = Replica("r")
    r.apply_update(bad)
    r.apply_update(good_update)
    assert r.pending().updates == 2
    with pytest.raises(InvalidUpdate, match="semantic rule 'parent'"):
        r.apply_update(author.encode_update())
    assert not r.pending()
    assert r.document("t").read() == "hello!"
    assert r.version() == good.version()


def test_pending_limit_refuses_instead_of_growing() -> None:
    a = Replica("a", client_id=1)
    log: list[bytes] = []
    a.on_update(lambda u, local: log.append(u))
    for i in range(5):
        a.document("d").insert(i, "x")
    b = Replica("b", limits=ReplicaLimits(max_pending_updates=2))
    b.apply_update(log[2])
    b.apply_update(log[3])
    with pytest.raises(PendingLimitExceeded, match="resync"):
        b.apply_update(log[4])
    assert b.pending().updates == 2
    b.apply_update(a.encode_update())  # a resync fills everything
    assert not b.pending()
    assert b.document("d").read() == "xxxxx"


def test_tracked_delete_set_equals_the_documents_own() -> None:
    for seed in range(10):
        updates = writer_stream(seed, writers=3, steps=40)
        r = _in_order(updates)
        assert r.version().deleted == parse_update(r.encode_update()).delete_set, seed


def test_checkpoints_do_not_change_content() -> None:
    r = Replica("a", limits=ReplicaLimits(checkpoint_log_bytes=64))
    doc = r.document("d")
    for i in range(200):
        doc.insert(i, "y")
    assert r._log_bytes <= max(64, len(r._checkpoint)) + 64
    r._rebuild()
    assert doc.read() == "y" * 200


def test_changes_are_announced_once_with_their_origin() -> None:
    a, b = Replica("a"), Replica("b")
    seen_a: list[bool] = []
    seen_b: list[bool] = []
    a.on_update(lambda u, local: seen_a.append(local))
    unsubscribe = b.on_update(lambda u, local: seen_b.append(local))
    a.document("d").insert(0, "x")
    b.apply_update(a.encode_update())
    assert seen_a == [True]
    assert seen_b == [False]
    unsubscribe()
    b.document("d").insert(0, "y")
    assert seen_b == [False]


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


def test_agent_names_travel_inside_the_document() -> None:
    a = Replica("alice", client_id=11)
    a.document("d").insert(0, "x")
    b = Replica("bob", client_id=22)
    b.apply_update(a.encode_update())
    assert b.agents() == {11: "alice"}


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


def test_a_rebuild_frees_the_document_it_replaces() -> None:
    """The observer subscription kept every replaced pycrdt Doc alive (a leak per rebuild)."""
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "hello")
    old = weakref.ref(r._doc)
    with pytest.raises(InvalidUpdate, match="refused"):
        r.apply_update(_item_with_parent((1, 0)), trusted=True)  # the engine refuses: rebuild
    gc.collect()
    assert old() is None
    r.document("t").insert(5, "!")  # the new document is observed
    assert r.document("t").read() == "hello!" and r.version().clocks[1] > 5


def test_a_snapshot_keeps_the_deletions_that_wait_for_their_ids() -> None:
    """A store folds its log into `encode_snapshot()`: a deletion that arrived before the ids it
    deletes must survive that, or those ids come back to life when they arrive."""
    author = Replica("author", client_id=1)
    author.document("t").insert(0, "hello")
    insertion = author.encode_update()
    author.document("t").delete(0, 1)
    deletion = deletes_only(parse_update(author.encode_update()).delete_set)
    hub = Replica("hub")
    hub.apply_update(deletion)  # waits: the ids are not here yet
    assert hub.pending().deletions
    restored = Replica("restored")
    restored.apply_update(hub.encode_snapshot())
    restored.apply_update(insertion)
    assert restored.document("t").read() == "ello"
    plain = Replica("plain")  # what a snapshot without them would give
    plain.apply_update(hub.encode_update())
    plain.apply_update(insertion)
    assert plain.document("t").read() == "hello"


def _with_deletions(agent: str = "typist") -> Replica:
    """A replica whose document holds insertions and deletions from two writers."""
    a, b = Replica(agent), Replica("other")
    for i in range(30):
        a.document("d").insert(0, f"word{i} ")
        b.document("d").insert(0, f"mot{i} ")
    for i in range(10):
        a.document("d").delete(3 * i, 2)
        b.document("d").delete(2 * i, 1)
    b.apply_update(a.encode_update())
    a.apply_update(b.encode_update())
    return a


def test_an_up_to_date_peers_step_2_is_recognised_without_parsing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a peer holding everything sends on reconnect (no structs, the whole delete set),
    as pycrdt and as Yjs write it, brings nothing: `holds` says so from the bytes, and applying
    it reads nothing (every reconnect would otherwise parse the room's whole delete set)."""
    room = _with_deletions()
    peer = Doc()
    peer.apply_update(room.encode_update())
    from_pycrdt = peer.get_update(room.state_vector())
    from_yjs = b"\x00" + parse_update(from_pycrdt).delete_set.encode()  # clients descending
    assert parse_update(from_pycrdt).delete_set.range_count() > 10
    before = room.version()

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed an update that brings nothing")

    monkeypatch.setattr("crdtdoc.replica.remote.parse_update", no_parsing)
    for data in (from_pycrdt, from_yjs):
        assert room.holds(data)
        assert not room.apply_update(data)
    assert room.version() == before


def test_holds_is_false_for_anything_else_and_follows_new_deletions() -> None:
    room = _with_deletions()
    peer = Doc()
    peer.apply_update(room.encode_update())
    step2 = peer.get_update(room.state_vector())
    assert room.holds(step2)
    assert not room.holds(room.encode_update())  # structs
    assert not room.holds(b"\x00")  # not even an update
    room.document("d").delete(0, 1)  # the room deleted one more: the old bytes are not its own
    assert not room.holds(step2)
    assert not room.apply_update(step2)  # parsed instead: still nothing new
    newer = Doc()
    newer.apply_update(room.encode_update())
    assert room.holds(newer.get_update(room.state_vector()))
    # a peer that deleted one more than the room: news, applied
    peer_replica = Replica("peer")
    peer_replica.apply_update(room.encode_update())
    peer_replica.document("d").delete(0, 1)
    extra = peer_replica.encode_update(room.version())
    assert not room.holds(extra)
    room.apply_update(extra)
    assert room.document("d").read() == peer_replica.document("d").read()


def test_committed_updates_carry_only_what_the_engine_integrated() -> None:
    """Attack review: an update re-sending an id the replica holds, with other content, is
    skipped there by the engine; announced as received, its bytes carried the other content,
    and a merge of the announced updates (a hub coalescing what waits for a peer, a Yjs
    client's store) read 'aZZZwy' where the replica reads 'abZZwy'. What is announced (and
    logged) is the engine's own encoding of what it integrated."""
    from pycrdt import merge_updates

    from tests.support.builders import typed

    u1, u2 = typed([(0, "a"), (1, "b")], 1111)
    _, forged = typed([(0, "a"), (1, "ZZZ")], 1111)  # re-sends 1111:1 with other content
    y0, y1 = typed([(0, "w"), (1, "y")], 2222)
    replica = Replica("hub")
    announced: list[bytes] = []
    replica.on_update(lambda update, local: announced.append(update))
    replica.apply_update(u1)
    assert replica.apply_update(merge_updates(forged, y1))  # waits for 2222:0
    replica.apply_update(merge_updates(u2, y0))  # brings it: both commit
    assert replica.document("t").read() == "abZZwy"
    reader = Replica("reader")
    reader.apply_update(merge_updates(*announced))
    assert reader.document("t").read() == "abZZwy"

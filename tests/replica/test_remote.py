"""`crdtdoc.replica.remote`: updates from elsewhere. Validated before the engine sees them (a
refusal, by the parser, the semantic gate, the judge or the engine, leaves the replica as it
was), held in the causal buffer until what they need arrives and then applied in order, bounded
per sender and in age, and recognised cheaply when they bring nothing (`holds`)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from crdtdoc import (
    Forbidden,
    InvalidUpdate,
    PendingLimitExceeded,
    Replica,
    ReplicaLimits,
    UsageError,
)
from crdtdoc.updates import Item, parse_update
from tests.support.builders import content, writer_stream
from tests.support.yjs_items import item_with_parent


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


def test_engine_refusal_mid_apply_rebuilds_and_raises_invalid_update() -> None:
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "hello")
    before = (r.version(), r.document("t").read(), r.encode_update())
    # Well-formed bytes whose parent id names a string item: yrs fails while applying.
    bad = item_with_parent((1, 0))
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
    bad = item_with_parent((1, 3))  # waits for 1:3, which will be a string: yrs refuses it
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


def _typed_log(count: int = 3) -> list[bytes]:
    """The updates of one writer typing `count` characters, one commit each."""
    author = Replica("author", client_id=1)
    log: list[bytes] = []
    author.on_update(lambda u, local: log.append(u))
    for i in range(count):
        author.document("d").insert(i, "x")
    return log


def test_the_judge_sees_each_update_with_its_origin_and_its_refusal_changes_nothing() -> None:
    log = _typed_log()
    r = Replica("hub")
    judged: list[tuple[int, dict[int, int], object]] = []

    def judge(items: list[Item], locator: object, before: dict[int, int], origin: object) -> None:
        judged.append((len(items), dict(before), origin))
        if origin == "mallory":
            raise Forbidden("not yours")

    r.judge = judge
    r.apply_update(log[0], origin="alice")
    before = (r.version(), r.document("d").read())
    with pytest.raises(Forbidden):
        r.apply_update(log[1], origin="mallory")
    assert (r.version(), r.document("d").read()) == before
    r.apply_update(log[1], trusted=True)  # trusted data is not judged
    assert judged[0][2] == "alice" and judged[1][1:] == ({1: 3}, "mallory") and len(judged) == 2


def test_a_buffered_update_refused_on_waking_goes_to_on_refused_not_to_the_waker() -> None:
    log = _typed_log()
    r = Replica("hub")

    def judge(items: list[Item], locator: object, before: dict[int, int], origin: object) -> None:
        if origin == "mallory":
            raise Forbidden("not yours")

    refused: list[tuple[object, str]] = []
    r.judge = judge
    r.on_refused = lambda origin, exc: refused.append((origin, str(exc)))
    assert r.apply_update(log[1], origin="mallory")  # waits for log[0]
    r.apply_update(log[0], origin="alice")  # wakes it: refused, told, not raised here
    assert refused == [("mallory", "not yours")]
    assert not r.pending() and r.document("d").read() == "x"


def test_each_origin_has_its_own_share_of_the_buffer() -> None:
    log = _typed_log(4)
    r = Replica("hub", limits=ReplicaLimits(max_pending_updates_per_origin=1))
    r.pending_holder = lambda origin: origin
    r.apply_update(log[1], origin="x")
    with pytest.raises(PendingLimitExceeded):
        r.apply_update(log[2], origin="x")
    r.apply_update(log[2], origin="y")  # another sender's share is untouched
    assert r.pending_of("x")[0] == r.pending_of("y")[0] == 1 and r.pending_count == 2
    assert r.drop_pending(lambda origin: origin != "x") == 1  # x left
    assert r.pending_of("x") == (0, 0) and r.pending().updates == 1
    with pytest.raises(UsageError, match="before anything waits"):
        r.share_pending({})


def test_untrusted_data_expires_after_waiting_too_long_and_names_its_origin() -> None:
    log = _typed_log(4)
    now = [100.0]
    r = Replica("hub", clock=lambda: now[0])
    r.apply_update(log[1], origin="old")
    r.apply_update(log[2], origin="own", trusted=True)
    now[0] += 10
    r.apply_update(log[3], origin="new")
    assert r.expire_pending(5.0) == ["old"]
    assert r.pending().updates == 2  # the trusted one waits as long as it must
    r.apply_update(log[0])
    assert r.document("d").read() == "x"  # log[1] expired: log[2] and log[3] still wait for it
    assert r.pending().missing.client_ranges(1)


def test_pending_entries_restore_what_waits_in_another_replica() -> None:
    author = Replica("author", client_id=1)
    log: list[bytes] = []
    author.on_update(lambda u, local: log.append(u))
    author.document("d").insert(0, "abc")
    author.document("d").insert(3, "def")
    author.document("d").delete(0, 1)
    r = Replica("r")
    for u in log[1:]:
        r.apply_update(u)
    copy = Replica("copy")
    for part in r.pending_entries():
        copy.apply_update(part)
    assert copy.pending() == r.pending() and copy.pending().deletions
    copy.apply_update(log[0])
    assert not copy.pending() and copy.document("d").read() == "bcdef"


def test_commits_before_an_engine_refusal_in_one_drain_are_still_announced() -> None:
    """An update applied, then one it woke in the causal buffer refused by the engine: the
    replica rebuilds without the refused one, and the first is still announced (a hub that
    never heard of it would neither store nor forward it). Found by review."""
    author = Replica("author", client_id=1)
    author.document("t").insert(0, "hello")
    bad = item_with_parent((1, 3))  # waits for 1:3 (inside a string): the engine refuses it
    r = Replica("r")
    heard: list[bytes] = []
    r.on_update(lambda update, local: heard.append(update))
    r.apply_update(bad, trusted=True)  # held in the causal buffer
    with pytest.raises(InvalidUpdate, match="refused"):
        r.apply_update(author.encode_update(), trusted=True)  # applies, then wakes `bad`
    assert r.document("t").read() == "hello"
    peer = Replica("peer")
    for update in heard:
        peer.apply_update(update)
    assert peer.document("t").read() == "hello"

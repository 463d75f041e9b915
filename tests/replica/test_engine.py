"""`crdtdoc.replica.engine`: the observed pycrdt document. What it tracks after each commit
(state vector, delete set, log, item index), what it reads back (versions, updates, snapshots,
agents), how it announces commits (once, with their origin), checkpoints, and how it is rebuilt,
undone, reset and released."""

from __future__ import annotations

import gc
import weakref

import pytest
from pycrdt import Doc

from crdtdoc import InvalidUpdate, Replica, ReplicaLimits
from crdtdoc.updates import decode_state_vector, deletes_only, parse_update
from crdtdoc.versions import Version
from tests.support.builders import writer_stream
from tests.support.yjs_items import item_with_parent


def _in_order(updates: list[bytes]) -> Replica:
    reference = Replica("reference")
    for u in updates:
        reference.apply_update(u)
    return reference


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


def test_agent_names_travel_inside_the_document() -> None:
    a = Replica("alice", client_id=11)
    a.document("d").insert(0, "x")
    b = Replica("bob", client_id=22)
    b.apply_update(a.encode_update())
    assert b.agents() == {11: "alice"}


def test_a_rebuild_frees_the_document_it_replaces() -> None:
    """The observer subscription kept every replaced pycrdt Doc alive (a leak per rebuild)."""
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "hello")
    old = weakref.ref(r._doc)
    with pytest.raises(InvalidUpdate, match="refused"):
        r.apply_update(item_with_parent((1, 0)), trusted=True)  # the engine refuses: rebuild
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


@pytest.mark.parametrize("checkpoint_log_bytes", [64, 256 * 1024])
def test_a_rebuild_after_an_engine_failure_keeps_the_checkpoint_and_the_log(
    checkpoint_log_bytes: int,
) -> None:
    """Whatever committed since the last checkpoint is in the log; a rebuild replays both."""
    r = Replica("a", client_id=1, limits=ReplicaLimits(checkpoint_log_bytes=checkpoint_log_bytes))
    for i in range(40):
        r.document("t").insert(i, "y")
    other = Replica("o", client_id=2)
    other.map("m").set("k", "v")
    r.apply_update(other.encode_update())
    assert r._log  # some of it only in the log
    before, generation = r.version(), r.generation
    with pytest.raises(InvalidUpdate, match="refused"):
        r.apply_update(item_with_parent((1, 0)), trusted=True)
    assert r.rebuilds == 1 and r.generation > generation
    assert r.version() == before
    assert r.document("t").read() == "y" * 40 and r.map("m").get("k") == "v"
    assert r._log == [] and r._checkpoint == r._doc.get_update()  # a fresh checkpoint


def test_release_drops_the_subscription_and_lets_the_replica_be_freed() -> None:
    r = Replica("a")
    r.document("t").insert(0, "x")
    seen: list[bytes] = []
    r.on_update(lambda u, local: seen.append(u))
    r.release()
    r.release()  # twice: harmless
    assert r._subscription is None
    generation, version = r.generation, r.version()
    r.document("t").insert(1, "y")  # the engine applies it; the replica no longer tracks it
    assert (seen, r.generation, r.version()) == ([], generation, version)
    ref = weakref.ref(r)
    del r
    gc.collect()
    assert ref() is None


def test_listeners_read_the_origin_of_the_update_being_announced() -> None:
    author = Replica("author", client_id=1)
    log: list[bytes] = []
    author.on_update(lambda u, local: log.append(u))
    author.document("t").insert(0, "ab")
    author.document("t").insert(2, "cd")
    author.document("t").delete(2, 1)  # the "c" of log[1]
    r = Replica("r")
    heard: list[tuple[object, bool]] = []
    r.on_update(lambda u, local: heard.append((r.commit_origin, local)))
    r.apply_update(log[2], origin="early")  # deletes an id r lacks: held
    r.apply_update(log[1], origin="second")  # waits for log[0]
    r.apply_update(log[0], origin="first")  # wakes log[1], then the held deletion
    r.document("t").insert(0, "!")
    assert heard == [("first", False), ("second", False), (None, False), (None, True)]
    assert r.document("t").read() == "!abd" and r.commit_origin is None


def test_encode_update_since_a_version_or_a_state_vector_carries_only_the_difference() -> None:
    a = Replica("a")
    a.document("t").insert(0, "hello")
    b = Replica("b")
    b.apply_update(a.encode_update())
    seen, vector = a.version(), a.state_vector()
    a.document("t").insert(5, " world")
    for since in (seen, vector):
        diff = a.encode_update(since)
        assert len(diff) < len(a.encode_update())
        assert parse_update(diff).structs.keys() == {a.client_id}
        assert parse_update(diff).structs[a.client_id].start == seen.clocks[a.client_id]
    b.apply_update(a.encode_update(seen))
    assert b.document("t").read() == "hello world" and b.version() == a.version()
    assert b.is_news(parse_update(a.encode_update())) is False


def test_undo_drops_logged_updates_and_continues_under_a_fresh_client_id() -> None:
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "keep ")
    r._take_checkpoint()
    used = r.version().clocks[1]
    r.document("t").insert(5, "drop")
    doomed = list(r._log)
    r._undo(doomed)
    assert r.document("t").read() == "keep "
    assert r.client_id not in (0, 1) and r.rebuilds == 1
    r.document("t").insert(5, "new")  # under the fresh id: no id is used twice
    assert r.document("t").read() == "keep new" and r.version().clocks[1] == used


def test_reset_empties_everything_under_a_fresh_client_id() -> None:
    r = Replica("a", client_id=1)
    r.document("t").insert(0, "x")
    r.apply_update(item_with_parent((9, 0)))  # waits in the buffer for client 9
    assert r.pending()
    generation = r.generation
    r._reset()
    assert r.version() == Version() and not r.pending() and r.encode_update() == b"\x00\x00"
    assert r.client_id != 1 and r.generation > generation and r._log == []
    r.document("t").insert(0, "y")  # registers again, observed
    assert r.agents() == {r.client_id: "a"} and r.document("t").read() == "y"


def test_the_direct_engine_call_applies_as_pycrdts_wrapper_does() -> None:
    """`_engine_apply` skips pycrdt's Python transaction wrapper: the document it builds, the
    errors it raises (a refused update, an observer's failure) are the wrapper's."""
    for seed in range(5):
        updates = writer_stream(seed, writers=3, steps=30)
        direct, public = Replica("direct"), Doc()
        for u in updates:
            direct._applying = (u, parse_update(u).structs, None)
            direct._engine_apply(u)
            direct._applying = None
            public.apply_update(u)
        assert direct._doc.get_update() == public.get_update(), seed
        assert direct._state == decode_state_vector(public.get_state()), seed
    r = Replica("r")
    with pytest.raises(ValueError, match="Cannot decode update"):
        r._engine_apply(b"\x01\x02garbage")
    r.apply_update(updates[0])  # no transaction was left open

    def failing(event: object) -> None:
        raise RuntimeError("observer failed")

    r._doc.observe(failing)
    with pytest.raises(ExceptionGroup) as raised:
        r._engine_apply(updates[1])
    assert [str(e) for e in raised.value.exceptions] == ["observer failed"]
    assert not r._doc._exceptions


def test_the_shared_empty_deletions_of_commits_stay_empty() -> None:
    """Commits that delete nothing share one empty set (`_NO_DELETIONS`): nothing may grow it."""
    from crdtdoc.replica.engine import _NO_DELETIONS

    for seed in range(5):
        r = _in_order(writer_stream(seed, writers=3, steps=40))
        r.document("d").insert(0, "x")
        r.document("d").delete(0, 1)
    assert not _NO_DELETIONS


def test_listeners_read_only_the_ids_a_remote_update_added() -> None:
    """`commit_fresh` names the ids the update integrated, not ids it re-sent (attack review:
    re-sending another client's stored structs with one new struct made the hub record the
    other client's writes under the sender's link)."""
    alice, mallory = Replica("alice"), Replica("mallory")
    alice.document("t").insert(0, "abc")
    mallory.apply_update(alice.encode_update())
    mallory.document("t").insert(3, "!")
    r = Replica("r")
    r.record_fresh = True
    r.apply_update(alice.encode_update())
    heard: list[object] = []
    r.on_update(lambda u, local: heard.append(r.commit_fresh))
    r.apply_update(mallory.encode_update())  # alice's structs again, and mallory's one
    r.document("t").insert(0, "?")
    end = r.version().clocks[mallory.client_id]
    assert heard == [{mallory.client_id: (0, end)}, None]  # alice's ids: not fresh
    quiet = Replica("quiet")  # not asked for: not computed
    quiet.on_update(lambda u, local: heard.append(quiet.commit_fresh))
    quiet.apply_update(mallory.encode_update())
    assert heard[-1] is None

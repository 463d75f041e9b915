"""Guarded commits at the hub (`crdtdoc.server.guarded`), on a room without sockets: refused
before they cost the hub's loop anything when the sender may not write or sends too much, charged
like the updates they carry; applied whole or not at all, stale only over others' changes to the
artifacts they read, fenced by what the coordinator says of their sender."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from crdtdoc import Replica
from crdtdoc.protocol.extension import Reply, Request
from crdtdoc.protocol.requests import MAX_COMMIT_UPDATES
from crdtdoc.server.limits import RateLimits
from crdtdoc.tokens import Grant
from tests.server.test_room import new_peer, new_room


def test_a_read_only_token_s_commit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """250,000 empty updates from a read-only token were each parsed and judged on the loop
    (3.75 s a commit, every other client waiting), then answered `applied`."""
    room, config = new_room(tmp_path)
    reader = new_peer(config, Grant("reader", "*", read_only=True), "reader")
    room.join(reader)
    started = time.process_time()
    reply = room.guarded.commit(
        reader, Request(1, "commit", {"updates": [b"\0\0"] * 250_000, "client": 1})
    )
    assert reply.error == "forbidden" and "read-only" in reply.message
    assert time.process_time() - started < 0.5


def test_commits_are_bounded_and_charged_like_the_updates_they_carry(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    room._limits = RateLimits(5.0, 1e12, 1e9, structs_per_s=1.0)  # a slow sender's budgets
    writer = new_peer(config, None, None)
    room.join(writer)
    many = {"updates": [b"\0\0"] * (MAX_COMMIT_UPDATES + 1), "client": 1}
    reply = room.guarded.commit(writer, Request(1, "commit", many))
    assert reply.error == "invalid" and str(MAX_COMMIT_UPDATES) in reply.message
    alice = Replica("alice")
    answers = []
    for n in range(12):  # faster than the sender's update rate: refused, nothing applied
        before = alice.version()
        alice.document("d").append(f"{n}\n")
        commit = {"updates": [alice.encode_update(before)], "client": alice.client_id}
        answers.append(room.guarded.commit(writer, Request(n, "commit", commit)).error)
    assert answers.count(None) >= 1 and "rate_limited" in answers
    assert room.limits.debt(writer.rate_key) > 0  # the structs it judged were charged


def test_a_commit_expecting_an_old_version_is_charged_and_its_reply_stays_small(
    tmp_path: Path,
) -> None:
    """Telling a commit what changed since the version it expected reads the whole document.
    One writer sent `expect` = the empty version again and again: each took seconds of the
    hub's loop (the feed walked each letter's chain of origins anew) and replied with every
    change. Now the feed is linear, the work is charged to the sender's struct budget (so a
    repeat waits out its debt), and the reply describes at most MAX_DESCRIBED changes."""
    from crdtdoc.server.guarded import MAX_DESCRIBED
    from crdtdoc.versions import Version

    room, config = new_room(tmp_path)
    writers = [Replica("alice"), Replica("bob")]
    for n in range(3000):  # letter by letter, taking turns: thousands of separate changes
        writer = writers[n % 2]
        writer.apply_update(room.replica.encode_update(writer.version()))
        before = writer.version()
        writer.document("d").insert(0 if n % 3 else n // 2, "x")
        room.replica.apply_update(writer.encode_update(before))
    room._limits = RateLimits(1e9, 1e12, 1e9, structs_per_s=100.0)  # a slow sender's budget
    mallory = new_peer(config, None, None)
    room.join(mallory)
    old = {"updates": [b"\0\0"], "client": 1, "expect": Version().to_bytes()}
    started = time.process_time()
    reply = room.guarded.commit(mallory, Request(1, "commit", old))
    assert time.process_time() - started < 1.0
    assert reply.error == "conflict" and reply.result["count"] > MAX_DESCRIBED
    assert len(reply.result["changes"]) == MAX_DESCRIBED
    assert room.limits.debt(mallory.rate_key) > 0  # the read was charged


# -- what a commit decides, on one hub ------------------------------------------------------


def commit_args(writer: Replica, *updates: bytes, **more: Any) -> dict[str, Any]:
    return {"updates": list(updates), "client": writer.client_id, **more}


def edit(writer: Replica, artifact: str, text: str) -> bytes:
    before = writer.version()
    writer.document(artifact).append(text)
    return writer.encode_update(before)


def test_a_commit_applies_whole_and_reaches_the_other_peers_not_its_sender(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path)
    ann, watcher = new_peer(config, None, None), new_peer(config, None, None)
    room.join(ann)
    room.join(watcher)
    sent_before = (len(ann._queue), len(watcher._queue))
    alice = Replica("alice")
    updates = [edit(alice, "d", "one;"), edit(alice, "d", "two;")]
    reply = room.guarded.commit(ann, Request(7, "commit", commit_args(alice, *updates)))
    assert reply == Reply(7, {"applied": 2})
    assert room.replica.document("d").read() == "one;two;"
    assert len(ann._queue) == sent_before[0]  # not echoed to its sender
    assert len(watcher._queue) > sent_before[1]


def test_a_stale_expect_conflicts_only_over_others_changes_to_the_artifacts_on(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path)
    ann = new_peer(config, None, None)
    room.join(ann)
    alice, bob = Replica("alice"), Replica("bob")
    read = room.replica.version()
    room.replica.apply_update(edit(bob, "plan", "bob's step;"))
    room.replica.apply_update(edit(alice, "notes", "alice's own;"))
    mine = edit(alice, "notes", "more;")
    over_notes = commit_args(alice, mine, expect=read.to_bytes(), on=["notes"])
    assert room.guarded.commit(ann, Request(1, "commit", over_notes)).error is None
    stale = commit_args(alice, edit(alice, "plan", "x;"), expect=read.to_bytes(), on=["plan"])
    reply = room.guarded.commit(ann, Request(2, "commit", stale))
    assert reply.error == "conflict" and reply.result["count"] == 1
    assert "bob" in reply.result["changes"][0] and reply.message.startswith("1 change(s)")
    assert room.replica.document("plan").read() == "bob's step;"  # nothing applied


def test_a_fenced_commit_asks_the_coordinator_as_its_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room, config = new_room(tmp_path)
    asked: list[tuple[str, str, int, str | None]] = []

    def fence_refusal(room_name: str, name: str, token: int, writer: str | None) -> str | None:
        asked.append((room_name, name, token, writer))
        return None if token == 2 else "lease 'L' changed hands"

    monkeypatch.setattr(room.coordinator, "fence_refusal", fence_refusal)
    ann = new_peer(config, None, None)
    ann.agent = "ann"
    room.join(ann)
    alice = Replica("alice")
    old = commit_args(alice, edit(alice, "d", "a;"), fence={"name": "L", "token": 1})
    assert room.guarded.commit(ann, Request(1, "commit", old)) == Reply(
        1, {}, "fenced", "lease 'L' changed hands"
    )
    assert room.replica.document("d").read() == ""
    current = commit_args(alice, *old["updates"], fence={"name": "L", "token": 2})
    assert room.guarded.commit(ann, Request(2, "commit", current)).error is None
    assert asked == [("r", "L", 1, "ann"), ("r", "L", 2, "ann")]


def test_commits_the_hub_cannot_apply_whole_are_refused_with_nothing_applied(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path, max_room_bytes=2000)
    ann = new_peer(config, None, None)
    room.join(ann)
    alice = Replica("alice")
    first = edit(alice, "d", "a;")
    lacking = edit(alice, "d", "b;")  # builds on `first`, which the hub never got
    reply = room.guarded.commit(ann, Request(1, "commit", commit_args(alice, lacking)))
    assert reply.error == "missing"
    overlapping = commit_args(alice, first, first)
    assert room.guarded.commit(ann, Request(2, "commit", overlapping)).message == (
        "the commit's updates overlap"
    )
    too_big = commit_args(alice, edit(alice, "d", "x" * 3000))
    assert room.guarded.commit(ann, Request(3, "commit", too_big)).error == "full"
    bad = room.guarded.commit(ann, Request(4, "commit", {"updates": [], "client": 1}))
    assert bad.error == "invalid"
    assert room.replica.document("d").read() == ""


def test_one_forbidden_update_refuses_the_whole_commit(tmp_path: Path) -> None:
    """bob's commit carries his own edit and one under alice's client id: forbidden, and his
    own edit is not applied either."""
    room, config = new_room(tmp_path)
    alice_peer = new_peer(config, Grant("alice", "*"), "alice")
    bob_peer = new_peer(config, Grant("bob", "*"), "bob")
    room.join(alice_peer)
    room.join(bob_peer)
    alice, bob = Replica("alice"), Replica("bob")
    mine = commit_args(alice, edit(alice, "d", "alice;"))
    assert room.guarded.commit(alice_peer, Request(1, "commit", mine)).error is None
    forged = edit(alice, "d", "forged;")
    bob_commit = commit_args(bob, edit(bob, "e", "bob;"), forged)
    reply = room.guarded.commit(bob_peer, Request(2, "commit", bob_commit))
    assert reply.error == "forbidden" and "belongs to alice" in reply.message
    assert room.replica.document("d").read() == "alice;"
    assert room.replica.document("e").read() == ""


def test_on_one_hub_a_shared_commit_is_decided_as_a_local_one(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    ann = new_peer(config, None, None)
    room.join(ann)
    alice = Replica("alice")
    request = Request(1, "commit", commit_args(alice, edit(alice, "d", "a;")))
    assert asyncio.run(room.guarded.commit_shared(ann, request)) == Reply(1, {"applied": 1})
    assert room.replica.document("d").read() == "a;"

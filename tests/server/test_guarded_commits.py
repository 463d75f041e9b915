"""Guarded commits at the hub (`crdtdoc.server.guarded`): refused before they cost the hub's loop
anything when the sender may not write or sends too much, charged like the updates they carry."""

from __future__ import annotations

import time
from pathlib import Path

from crdtdoc import Replica
from crdtdoc.protocol.extension import Request
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

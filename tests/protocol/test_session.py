"""The sans-I/O sync session: no sockets, no event loop."""

from __future__ import annotations

import pytest

from crdtdoc import InvalidUpdate, Replica
from crdtdoc.protocol import SyncSession, SyncUpdate, decode_message, encode_message


def _pump(a: SyncSession, b: SyncSession, a_out: list[bytes], b_out: list[bytes]) -> int:
    """Delivers messages both ways until quiet; returns how many were delivered."""
    count = 0
    while a_out or b_out:
        if a_out:
            b_out.extend(b.receive(a_out.pop(0)))
            count += 1
        if b_out:
            a_out.extend(a.receive(b_out.pop(0)))
            count += 1
    return count


def test_two_replicas_sync_both_ways_on_open() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, "from alice ")
    bob.document("d").insert(0, "from bob ")
    sa, sb = SyncSession(alice), SyncSession(bob)
    delivered = _pump(sa, sb, sa.open(), sb.open())
    assert delivered == 4  # step 1 each way, step 2 each way
    assert alice.document("d").read() == bob.document("d").read()
    assert alice.version() == bob.version()
    assert sa.synced and sb.synced


def test_a_gap_triggers_exactly_one_resync_request() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    updates: list[bytes] = []
    alice.on_update(lambda u, local: updates.append(u))
    for i in range(3):
        alice.document("d").insert(i, "x")
    sa, sb = SyncSession(alice), SyncSession(bob)
    replies = sb.receive(sa.local_update(updates[2]))  # 0 and 1 were lost
    assert len(replies) == 1 and decode_message(replies[0]).__class__.__name__ == "SyncStep1"
    assert sb.receive(sa.local_update(updates[2])) == []  # same gap: no second request
    answer = sa.receive(replies[0])
    assert sb.receive(answer[0]) == []
    assert bob.document("d").read() == "xxx" and not bob.pending()


def test_invalid_update_inside_a_valid_message_raises() -> None:
    session = SyncSession(Replica("a"))
    with pytest.raises(InvalidUpdate):
        session.receive(encode_message(SyncUpdate(b"\xff\xff")))

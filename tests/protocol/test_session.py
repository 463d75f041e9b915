"""The sans-I/O sync session: no sockets, no event loop."""

from __future__ import annotations

import pytest

from crdtdoc import InvalidUpdate, Replica
from crdtdoc.protocol.messages import SyncUpdate, decode_message, encode_message
from crdtdoc.protocol.session import SyncSession


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


def test_a_step_2_past_the_peer_s_limit_goes_in_slices_under_it() -> None:
    """An offline agent's 600 KB of edits went as one step 2 to a hub that takes 64 KiB per
    message: the hub closed the link over it on every reconnect, and the edits never arrived."""
    import random

    from crdtdoc.protocol.messages import SyncStep1, SyncStep2, SyncUpdate, decode_message

    rng = random.Random(5)
    writer = Replica("offline")
    doc = writer.document("draft")
    for n in range(300):
        doc.insert(rng.randint(0, len(doc)), f"{n} " + "lorem ipsum é " * 140 + "\n")
    doc.delete(10, 500)
    limit = 64 * 1024
    session = SyncSession(writer, max_message_bytes=limit)
    sent = session.handle(SyncStep1(Replica("hub").state_vector()))
    assert len(sent) > 5 and all(len(m) <= limit for m in sent), [len(m) for m in sent]
    messages = [decode_message(m) for m in sent]
    assert isinstance(messages[0], SyncStep2)
    assert all(isinstance(m, SyncUpdate) for m in messages[1:])
    hub = Replica("hub")
    for m in messages:
        assert isinstance(m, (SyncStep2, SyncUpdate))
        hub.apply_update(m.update)
    assert hub.document("draft").read() == doc.read() and hub.version() == writer.version()
    small = SyncSession(writer, max_message_bytes=None).handle(SyncStep1(b"\x00"))
    assert len(small) == 1  # no limit said: one step 2, as before

"""Runs of sync updates queued for one connection leave as one message: applied, the merge does
what the updates did one by one, and every other message keeps its place."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdtdoc import Replica
from crdtdoc.errors import CrdtdocError
from crdtdoc.protocol.coalesce import _update_of, coalesce
from crdtdoc.protocol.messages import (
    Awareness,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)


def _as_update_message(update: bytes) -> bytes:
    return encode_message(SyncUpdate(update))


def _edits(seed: int, count: int) -> list[bytes]:
    """Sync update messages from three writers who see each other's work now and then, with
    text beyond ASCII (a merge must count clocks as Yjs does: UTF-16 code units)."""
    rng = random.Random(seed)
    writers = [Replica(f"w{i}") for i in range(3)]
    messages = []
    for _ in range(count):
        writer = rng.choice(writers)
        before = writer.version()
        text = writer.document("t")
        if len(text) > 3 and rng.random() < 0.3:
            text.delete(rng.randrange(len(text) - 2), 2)
        else:
            text.insert(rng.randint(0, len(text)), rng.choice(["a", "bc", "déf", "😀x"]))
        update = writer.encode_update(before)
        messages.append(encode_message(SyncUpdate(update)))
        for other in writers:
            if other is not writer and rng.random() < 0.5:
                other.apply_update(update)
    return messages


def _text(messages: list[bytes]) -> str:
    replica = Replica("reader")
    for message in messages:
        decoded = decode_message(message)
        if isinstance(decoded, (SyncUpdate, SyncStep2)):
            replica.apply_update(decoded.update)
    assert not replica.pending()
    return replica.document("t").read()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(0, 30), others=st.integers(0, 5))
def test_coalesced_messages_apply_to_the_same_document_in_the_same_order(
    seed: int, count: int, others: int
) -> None:
    rng = random.Random(seed)
    messages = _edits(seed, count)
    for i in range(others):  # presence and a step 2 in between: never merged, never moved
        at = rng.randint(0, len(messages))
        other = Awareness(bytes([1, i, 0])) if i % 2 else SyncStep2(b"\x00\x00")
        messages.insert(at, encode_message(other))
    sent = coalesce(messages, max_bytes=rng.choice([60, 400, 1 << 20]))
    assert _text(sent) == _text(messages)
    assert [m for m in sent if m[:2] != b"\x00\x02"] == [
        m for m in messages if m[:2] != b"\x00\x02"
    ]
    assert len(sent) <= len(messages)


def test_a_run_of_updates_becomes_one_message_and_the_cap_splits_runs() -> None:
    messages = _edits(7, 20)
    assert len(coalesce(messages)) == 1
    capped = coalesce(messages, max_bytes=3 * max(len(m) for m in messages))
    assert 1 < len(capped) < len(messages)
    assert _text(capped) == _text(messages)
    unreadable = encode_message(SyncUpdate(b"\xff\xff\xff"))  # not an update the engine reads
    assert coalesce([messages[0], unreadable]) == [messages[0], unreadable]  # left as queued


def test_a_long_run_is_merged_in_bounded_pieces() -> None:
    """Merging grows faster than the run: a queue of a thousand keystrokes leaves in pieces of
    at most MAX_MERGED_UPDATES, never as one costly merge."""
    from crdtdoc.protocol.coalesce import MAX_MERGED_UPDATES

    messages = _edits(3, 150)
    sent = coalesce(messages)
    assert len(sent) == -(-len(messages) // MAX_MERGED_UPDATES)
    assert _text(sent) == _text(messages)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(_as_update_message),
        st.binary(max_size=300).map(lambda rest: b"\x00\x02" + rest),  # a sync update, or not
    )
)
def test_the_update_is_read_in_place_exactly_as_the_decoder_reads_it(message: bytes) -> None:
    """The fan-out reads each message's update without a decoder: it must agree with
    `decode_message` on every input, returning None where that finds no sync update."""
    try:
        decoded = decode_message(message)
    except CrdtdocError:
        decoded = None
    expected = decoded.update if isinstance(decoded, SyncUpdate) else None
    assert _update_of(message) == expected

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import create_sync_message, create_update_message

from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.replica import Replica

MESSAGES = [
    SyncStep1(b"\x00"),
    SyncStep2(b"\x00\x00"),
    SyncUpdate(b"\x01\x02"),
    Awareness(b"\x01\x02\x03"),
    QueryAwareness(),
    Auth("token expired"),
]


@pytest.mark.parametrize("message", MESSAGES)
def test_round_trip(message: object) -> None:
    assert decode_message(encode_message(message)) == message  # type: ignore[arg-type]


def test_bytes_match_what_pycrdts_y_protocols_writes() -> None:
    r = Replica("a")
    r.document("d").insert(0, "x")
    update = r.encode_update()
    assert encode_message(SyncUpdate(update)) == create_update_message(update)
    from pycrdt import Doc

    doc: Doc = Doc()
    doc.apply_update(update)
    assert decode_message(create_sync_message(doc)) == SyncStep1(doc.get_state())


@pytest.mark.parametrize(
    "data, pattern",
    [
        (b"", "truncated"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x07\x00", "unknown sync message type 7"),
        (b"\x00\x00\x05ab", "past the end"),
        (b"\x00\x00\x01a!", "trailing"),
        (b"\x02\x01", "unknown auth"),
    ],
)
def test_bad_messages_raise_invalid_message(data: bytes, pattern: str) -> None:
    with pytest.raises(InvalidMessage, match=pattern):
        decode_message(data)


@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_invalid_message(data: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        decode_message(data)


def test_carried_update_is_the_decoded_update_without_a_copy() -> None:
    from crdtdoc.protocol.messages import (
        Awareness,
        SyncStep1,
        SyncStep2,
        SyncUpdate,
        carried_update,
        decode_message,
        encode_message,
    )

    update = bytes(range(200)) * 3  # a length that takes a two-byte varint
    for message in (SyncStep2(update), SyncUpdate(update)):
        data = encode_message(message)
        view = carried_update(data)
        assert view is not None and view.obj is data
        assert bytes(view) == decode_message(data).update  # type: ignore[union-attr]
    assert carried_update(encode_message(SyncStep1(b"\x00"))) is None
    assert carried_update(encode_message(Awareness(b"\x00"))) is None
    whole = encode_message(SyncUpdate(update))
    assert carried_update(whole[:-1]) is None  # shorter than it says
    assert carried_update(whole + b"\x00") is None  # trailing bytes

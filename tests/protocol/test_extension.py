from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import Replica
from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.extension import (
    Durable,
    Hello,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import Extension, decode_message, encode_message


def test_round_trips_through_the_message_layer() -> None:
    r = Replica("a")
    r.document("d").insert(0, "hi")
    r.document("d").delete(0, 1)
    for message in (
        Hello("alice"),
        Welcome("room/1", r.version()),
        Welcome("room/1", r.version(), max_message_bytes=1 << 20),
        Durable(r.version()),
        Durable(r.version(), store_error="database or disk is full"),
    ):
        wire = encode_message(encode_extension(message))
        assert wire[0] == 100  # message type 100: never sent to stock Yjs clients
        decoded = decode_message(wire)
        assert isinstance(decoded, Extension)
        assert decode_extension(decoded) == message


def _payload(body: object) -> Extension:
    return Extension(msgpack.packb(body, use_bin_type=True))


@pytest.mark.parametrize(
    ("payload", "pattern"),
    [
        (Extension(b"\xc1"), "not msgpack"),
        (Extension(b"\x93\x01\x02"), "not msgpack"),
        (_payload([1, 2]), "must be a msgpack map"),
        (_payload({"type": "launch"}), "unknown extension message type 'launch'"),
        (_payload({"type": "hello", "agent": 5, "protocol": 1}), "'agent' must be str"),
        (_payload({"type": "hello", "agent": "", "protocol": 1}), "1..200"),
        (_payload({"type": "hello", "agent": "a", "protocol": True}), "'protocol' must be int"),
        (_payload({"type": "durable", "version": b"\x07"}), "not a version"),
        (
            _payload({"type": "durable", "version": b"\x01\x00\x00", "store_error": 1}),
            "'store_error' must be str or nil",
        ),
        (
            _payload(
                {
                    "type": "welcome",
                    "room": "r",
                    "durable": b"\x01\x00\x00",
                    "protocol": 1,
                    "max_message_bytes": -1,
                }
            ),
            "'max_message_bytes' must be a positive int",
        ),
    ],
)
def test_refusals_say_what_is_wrong(payload: Extension, pattern: str) -> None:
    with pytest.raises(InvalidMessage, match=pattern):
        decode_extension(payload)


@given(st.binary(max_size=100))
def test_random_payloads_only_ever_raise_invalid_message(data: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        decode_extension(Extension(data))


def test_store_error_is_sent_only_while_there_is_one() -> None:
    """A `durable` without a store error has no `store_error` key at all (as before it
    existed); older clients ignore the key when it is there."""
    version = Replica("a").version()
    plain = msgpack.unpackb(encode_extension(Durable(version)).payload)
    assert "store_error" not in plain
    failing = msgpack.unpackb(encode_extension(Durable(version, "disk full")).payload)
    assert failing["store_error"] == "disk full"

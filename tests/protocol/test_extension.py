from __future__ import annotations

import contextlib
import itertools

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import Replica
from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.extension import (
    Durable,
    DurableTracker,
    Hello,
    Welcome,
    decode_extension,
    durable_delta,
    encode_extension,
)
from crdtdoc.protocol.messages import Extension, decode_message, encode_message
from crdtdoc.versions import Version


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


def _deleting(replica: Replica, count: int) -> list[Version]:
    """Versions of `replica` after each of `count` scattered deletions (each its own range)."""
    text = replica.document("d")
    text.insert(0, "x" * (4 * count))
    versions = []
    for i in range(count):
        text.delete(3 * (count - i), 1)  # from the end backwards: never two adjacent ids
        versions.append(replica.version())
    return versions


def test_a_durable_delta_round_trips_and_is_told_apart_from_a_full_version() -> None:
    r = Replica("a")
    older, newer = _deleting(r, 2)
    delta = Durable(durable_delta(newer, older), delta=True)
    body = msgpack.unpackb(encode_extension(delta).payload)
    assert "delta" in body and "version" not in body
    assert decode_extension(encode_extension(delta)) == delta
    assert decode_extension(encode_extension(Durable(newer))) == Durable(newer, delta=False)
    both = _payload({"type": "durable", "version": b"\x01\x00\x00", "delta": b"\x01\x00\x00"})
    with pytest.raises(InvalidMessage, match="not both"):
        decode_extension(both)
    with pytest.raises(InvalidMessage, match="'delta' is not a version"):
        decode_extension(_payload({"type": "durable", "delta": b"\x07"}))


def test_deltas_stay_small_and_join_into_the_exact_durable_version() -> None:
    """The hundredth acknowledgement carries one deletion, not a hundred; folded in order
    after the welcome's full version, deltas give exactly the hub's durable version."""
    versions = _deleting(Replica("a"), 300)
    tracker = DurableTracker()
    tracker.receive(Welcome("r", versions[9]))
    sizes = []
    for before, after in itertools.pairwise(versions[9:]):
        message = Durable(durable_delta(after, before), delta=True)
        wire = encode_extension(message)
        sizes.append(len(wire.payload))
        decoded = decode_extension(wire)
        assert isinstance(decoded, Durable)
        tracker.receive(decoded)
        assert tracker.version == after and tracker.covers(after)
        assert after == versions[-1] or not tracker.covers(versions[-1])
    full = len(encode_extension(Durable(versions[-1])).payload)
    assert max(sizes) * 20 < full, (max(sizes), full)
    tracker.receive(Durable(versions[5]))  # a full version replaces (a resync, an old hub)
    assert tracker.version == versions[5] and not tracker.covers(versions[6])


def test_a_delta_older_than_what_is_known_changes_nothing() -> None:
    """A client welcomed with a version newer than the hub's last announcement gets a delta
    against that older announcement: joining it is harmless."""
    versions = _deleting(Replica("a"), 5)
    tracker = DurableTracker()
    tracker.receive(Welcome("r", versions[3]))
    tracker.receive(Durable(durable_delta(versions[2], versions[0]), delta=True))
    assert tracker.version == versions[3]
    tracker.receive(Durable(durable_delta(versions[4], versions[2]), delta=True))
    assert tracker.version == versions[4]

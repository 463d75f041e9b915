"""y-protocols message framing (sync, awareness, auth), as `y-websocket` speaks it.

Each websocket frame is one message: a varuint message type, then its body. Decoding checks every
length and refuses trailing bytes with `InvalidMessage`; the update inside a sync message is
validated separately, by the replica, with `InvalidUpdate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import InvalidMessage

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3
MESSAGE_CRDTDOC = 100
"""crdtdoc's extension messages (`crdtdoc.protocol.extension`), only for peers that opted in."""

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """ "Here is my state vector; send me what I lack." """

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The answer to step 1: an update with everything the asker lacked."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental update, broadcast as changes happen."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Awareness:
    """An awareness update (presence: who is here, cursors), passed through as bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for everyone's awareness state."""


@dataclass(frozen=True, slots=True)
class Auth:
    """y-protocols auth message; only "permission denied" (with a reason) is defined."""

    reason: str


@dataclass(frozen=True, slots=True)
class Extension:
    """A crdtdoc extension message; `payload` is msgpack, decoded by `protocol.extension`."""

    payload: bytes


Message = SyncStep1 | SyncStep2 | SyncUpdate | Awareness | QueryAwareness | Auth | Extension


def encode_message(message: Message) -> bytes:
    enc = Encoder()
    if isinstance(message, SyncStep1):
        enc.write_var_uint(MESSAGE_SYNC)
        enc.write_var_uint(SYNC_STEP1)
        enc.write_var_bytes(message.state_vector)
    elif isinstance(message, SyncStep2):
        enc.write_var_uint(MESSAGE_SYNC)
        enc.write_var_uint(SYNC_STEP2)
        enc.write_var_bytes(message.update)
    elif isinstance(message, SyncUpdate):
        enc.write_var_uint(MESSAGE_SYNC)
        enc.write_var_uint(SYNC_UPDATE)
        enc.write_var_bytes(message.update)
    elif isinstance(message, Awareness):
        enc.write_var_uint(MESSAGE_AWARENESS)
        enc.write_var_bytes(message.data)
    elif isinstance(message, QueryAwareness):
        enc.write_var_uint(MESSAGE_QUERY_AWARENESS)
    elif isinstance(message, Extension):
        enc.write_var_uint(MESSAGE_CRDTDOC)
        enc.write_var_bytes(message.payload)
    else:
        enc.write_var_uint(MESSAGE_AUTH)
        enc.write_var_uint(AUTH_PERMISSION_DENIED)
        enc.write_var_string(message.reason)
    return enc.to_bytes()


def decode_message(data: bytes) -> Message:
    """Parses one message; raises `InvalidMessage` saying what is wrong."""
    dec = Decoder(data, InvalidMessage)
    kind = dec.read_var_uint()
    message: Message
    if kind == MESSAGE_SYNC:
        sync = dec.read_var_uint()
        body = dec.read_var_bytes()
        if sync == SYNC_STEP1:
            message = SyncStep1(body)
        elif sync == SYNC_STEP2:
            message = SyncStep2(body)
        elif sync == SYNC_UPDATE:
            message = SyncUpdate(body)
        else:
            raise dec.fail(
                f"unknown sync message type {sync} (known: 0 step 1, 1 step 2, 2 update)"
            )
    elif kind == MESSAGE_AWARENESS:
        message = Awareness(dec.read_var_bytes())
    elif kind == MESSAGE_QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MESSAGE_AUTH:
        if dec.read_var_uint() != AUTH_PERMISSION_DENIED:
            raise dec.fail("unknown auth message type")
        message = Auth(dec.read_var_string())
    elif kind == MESSAGE_CRDTDOC:
        message = Extension(dec.read_var_bytes())
    else:
        raise dec.fail(f"unknown message type {kind}")
    if not dec.at_end():
        raise dec.fail(f"{dec.remaining} trailing bytes after the message")
    return message


def carried_update(data: bytes) -> memoryview | None:
    """The update a sync step 2 or update message carries, as a view of `data` (not copied),
    or None for any other message and for one that does not read as one (`decode_message`
    says why): for looking at a message's update without decoding it (a large one before
    deciding to, each one a hub's fan-out merges). Read in place, without a decoder."""
    if len(data) < 3 or data[0] != MESSAGE_SYNC or data[1] not in (SYNC_STEP2, SYNC_UPDATE):
        return None
    length = shift = 0
    pos = 2
    while pos < len(data) and pos < 12:  # a varuint of at most 10 bytes
        byte = data[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return memoryview(data)[pos:] if pos + length == len(data) else None
        shift += 7
    return None

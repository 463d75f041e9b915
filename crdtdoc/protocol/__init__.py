"""y-protocols messages and the sans-I/O sync session that drives a replica through them."""

from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.protocol.session import SyncSession

__all__ = [
    "Auth",
    "Awareness",
    "Message",
    "QueryAwareness",
    "SyncSession",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "decode_message",
    "encode_message",
]

"""crdtdoc: shared artifacts for many agents, as Yjs-compatible CRDTs.

Each agent holds a `Replica`, edits it instantly and offline, and exchanges Yjs updates with others;
concurrent edits converge without locks and `Version`s say what each replica has seen.
"""

from crdtdoc.artifacts import Document, SharedMap
from crdtdoc.changes import Change
from crdtdoc.errors import (
    CrdtdocError,
    InvalidIndex,
    InvalidMessage,
    InvalidToken,
    InvalidUpdate,
    InvalidValue,
    PendingLimitExceeded,
    RemoteError,
    ReplicaRebuilt,
    StorageError,
)
from crdtdoc.replica import Pending, Replica, ReplicaLimits
from crdtdoc.versions import Order, Version

__version__ = "0.1.0"

__all__ = [
    "Change",
    "CrdtdocError",
    "Document",
    "InvalidIndex",
    "InvalidMessage",
    "InvalidToken",
    "InvalidUpdate",
    "InvalidValue",
    "Order",
    "Pending",
    "PendingLimitExceeded",
    "RemoteError",
    "Replica",
    "ReplicaLimits",
    "ReplicaRebuilt",
    "SharedMap",
    "StorageError",
    "Version",
]

"""crdtdoc: shared artifacts for many agents, as Yjs-compatible CRDTs.

Each agent holds a `Replica`, edits it instantly and offline, and exchanges Yjs updates with others;
concurrent edits converge without locks and `Version`s say what each replica has seen.
"""

# First: whether the compiled hot path or its pure-Python source loads (crdtdoc.hotpath).
from crdtdoc import hotpath as hotpath  # isort: split

from crdtdoc.artifacts import (
    Document,
    InterfaceSpec,
    Note,
    SharedMap,
    SpecValue,
    Task,
    TaskList,
)
from crdtdoc.changes import Change
from crdtdoc.client.blocking import BlockingReplica, connect_blocking
from crdtdoc.client.connection import ConnectedReplica, LinkOptions, connect
from crdtdoc.client.coordination import Lease, LeaseInfo, retry
from crdtdoc.errors import (
    AlreadyClaimed,
    AmbiguousText,
    AuthError,
    Conflict,
    ConflictError,
    CrdtdocError,
    Deadlock,
    FencedOut,
    Forbidden,
    FrozenError,
    HubStorageError,
    InvalidIndex,
    InvalidMessage,
    InvalidToken,
    InvalidUpdate,
    InvalidValue,
    LeaseHeld,
    LeaseLost,
    NotConnected,
    NotFound,
    PendingLimitExceeded,
    RateLimited,
    Refused,
    RemoteError,
    ReplicaRebuilt,
    RoomFull,
    StaleRead,
    StorageError,
    SyncTimeout,
    TooLarge,
    WrongKind,
)
from crdtdoc.protocol.presence import Presence
from crdtdoc.replica import Pending, Replica, ReplicaLimits
from crdtdoc.textmodel import EMBED
from crdtdoc.versions import Order, Version

__version__ = "0.1.0"

__all__ = [
    "AlreadyClaimed",
    "AmbiguousText",
    "AuthError",
    "BlockingReplica",
    "Change",
    "Conflict",
    "ConflictError",
    "ConnectedReplica",
    "CrdtdocError",
    "Deadlock",
    "Document",
    "EMBED",
    "FencedOut",
    "Forbidden",
    "FrozenError",
    "WrongKind",
    "HubStorageError",
    "InterfaceSpec",
    "InvalidIndex",
    "InvalidMessage",
    "InvalidToken",
    "InvalidUpdate",
    "InvalidValue",
    "Lease",
    "LeaseHeld",
    "LeaseInfo",
    "LeaseLost",
    "LinkOptions",
    "NotConnected",
    "NotFound",
    "Note",
    "Order",
    "Pending",
    "PendingLimitExceeded",
    "Presence",
    "RateLimited",
    "Refused",
    "RemoteError",
    "Replica",
    "ReplicaLimits",
    "ReplicaRebuilt",
    "RoomFull",
    "SharedMap",
    "SpecValue",
    "StaleRead",
    "StorageError",
    "SyncTimeout",
    "Task",
    "TaskList",
    "TooLarge",
    "Version",
    "connect",
    "connect_blocking",
    "retry",
]

"""crdtdoc: shared artifacts for many agents, as Yjs-compatible CRDTs.

Each agent holds a `Replica`, edits it instantly and offline, and exchanges Yjs updates with others;
concurrent edits converge without locks and `Version`s say what each replica has seen.
"""

# First: whether the compiled hot path or its pure-Python source loads (crdtdoc.hotpath).
from crdtdoc import hotpath as hotpath  # isort: split

import importlib
import logging
from typing import TYPE_CHECKING, Any

# Errors load at once: one small module that every caller may need to catch.
from crdtdoc.errors import (
    AlreadyClaimed,
    AmbiguousText,
    AuthError,
    ConcurrentValues,
    Conflict,
    ConflictError,
    CoordinationError,
    CrdtdocError,
    Deadlock,
    FencedOut,
    Forbidden,
    FrozenError,
    HistoryUnavailable,
    HubStorageError,
    InvalidIndex,
    InvalidMessage,
    InvalidToken,
    InvalidUpdate,
    InvalidValue,
    InvalidVersionToken,
    LeaseHeld,
    LeaseLost,
    LinkError,
    NotConnected,
    NotFound,
    PendingLimitExceeded,
    RateLimited,
    Refused,
    RemoteError,
    ReplicaError,
    ReplicaRebuilt,
    ReviewRefused,
    RoomFull,
    StaleRead,
    StorageError,
    SyncTimeout,
    TooLarge,
    UsageError,
    WrongKind,
)

if TYPE_CHECKING:  # the same names, for type checkers; at run time `__getattr__` imports them
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
    from crdtdoc.protocol.presence import Presence
    from crdtdoc.replica import Pending, Replica, ReplicaLimits
    from crdtdoc.textmodel import EMBED
    from crdtdoc.versions import Order, Version

# A library stays quiet unless its user configures logging (the CLI and the hub configure their
# own structured logs): without this, Python prints its warnings to stderr on its own.
logging.getLogger("crdtdoc").addHandler(logging.NullHandler())

_LAZY = {
    "BlockingReplica": "crdtdoc.client.blocking",
    "Change": "crdtdoc.changes",
    "ConnectedReplica": "crdtdoc.client.connection",
    "Document": "crdtdoc.artifacts",
    "EMBED": "crdtdoc.textmodel",
    "InterfaceSpec": "crdtdoc.artifacts",
    "Lease": "crdtdoc.client.coordination",
    "LeaseInfo": "crdtdoc.client.coordination",
    "LinkOptions": "crdtdoc.client.connection",
    "Note": "crdtdoc.artifacts",
    "Order": "crdtdoc.versions",
    "Pending": "crdtdoc.replica",
    "Presence": "crdtdoc.protocol.presence",
    "Replica": "crdtdoc.replica",
    "ReplicaLimits": "crdtdoc.replica",
    "SharedMap": "crdtdoc.artifacts",
    "SpecValue": "crdtdoc.artifacts",
    "Task": "crdtdoc.artifacts",
    "TaskList": "crdtdoc.artifacts",
    "Version": "crdtdoc.versions",
    "connect": "crdtdoc.client.connection",
    "connect_blocking": "crdtdoc.client.blocking",
    "retry": "crdtdoc.client.coordination",
}
"""Public name -> the module defining it, imported on first use: `import crdtdoc.errors`, the
CLI's `--help` and its light commands do not pay for the engine, the client or websockets."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crdtdoc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "AlreadyClaimed",
    "AmbiguousText",
    "AuthError",
    "BlockingReplica",
    "Change",
    "ConcurrentValues",
    "Conflict",
    "ConflictError",
    "connect",
    "connect_blocking",
    "ConnectedReplica",
    "CoordinationError",
    "CrdtdocError",
    "Deadlock",
    "Document",
    "EMBED",
    "FencedOut",
    "Forbidden",
    "FrozenError",
    "ReviewRefused",
    "HistoryUnavailable",
    "HubStorageError",
    "InterfaceSpec",
    "InvalidIndex",
    "InvalidMessage",
    "InvalidToken",
    "InvalidUpdate",
    "InvalidValue",
    "InvalidVersionToken",
    "Lease",
    "LeaseHeld",
    "LeaseInfo",
    "LeaseLost",
    "LinkError",
    "LinkOptions",
    "NotConnected",
    "Note",
    "NotFound",
    "Order",
    "Pending",
    "PendingLimitExceeded",
    "Presence",
    "RateLimited",
    "Refused",
    "RemoteError",
    "Replica",
    "ReplicaError",
    "ReplicaLimits",
    "ReplicaRebuilt",
    "retry",
    "RoomFull",
    "SharedMap",
    "SpecValue",
    "StaleRead",
    "StorageError",
    "SyncTimeout",
    "Task",
    "TaskList",
    "TooLarge",
    "UsageError",
    "Version",
    "WrongKind",
]

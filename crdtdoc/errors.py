"""The exception tree: every error crdtdoc raises derives from `CrdtdocError`, through one group
a caller can catch as a whole:

- `UsageError`: the call itself is wrong (a bad argument, a name that is not there, a call in
  the wrong state); fix the call. The CLI exits 2 (8 for `NotFound`, `AmbiguousText`, `WrongKind`).
- `RemoteError`: bytes from elsewhere (a peer, a file, a token) were refused; each carries the
  websocket close code a hub closes the offending connection with.
- `Refused`: the hub refused this replica's write; the replica was reset to the hub's state.
- `CoordinationError`: other agents' work stands in the way (a claim, concurrent values, a read
  gone stale, a lease, a freeze); read again, wait or resolve, then retry.
- `StorageError`: a replica file or a hub's store cannot be read or written.
- `LinkError`: the connection to the hub is down or slow; nothing is lost, call again.
- `ReplicaError`: the replica could not do it (the engine failed, the causal buffer is full).

Two errors were renamed to say what they are; the old names stay as aliases for one release:
`ConflictError` is `ConcurrentValues`, `InvalidToken` is `InvalidVersionToken`.
"""

from __future__ import annotations

from typing import Any


class CrdtdocError(Exception):
    """Root of every error crdtdoc raises."""


# -- the groups ---------------------------------------------------------------------------------


class UsageError(CrdtdocError):
    """The call is wrong: an argument of the wrong type or out of range, a name that is not
    there, a call made in a state that does not allow it. Nothing was changed."""


class CoordinationError(CrdtdocError):
    """Other agents' work stands in the way: read again, wait or resolve, then retry."""


class LinkError(CrdtdocError):
    """The connection to the hub is down, or did not answer in time. Nothing is lost."""


class ReplicaError(CrdtdocError):
    """The replica could not do what was asked (the engine failed, a buffer is full)."""


class RemoteError(CrdtdocError):
    """Input that came from outside this process was refused.

    `close_code` is the websocket close code a hub uses when the input arrived on a connection.
    """

    close_code: int = 1008  # policy violation


class InvalidUpdate(RemoteError):
    """Bytes that are not a valid Yjs v1 update; nothing was applied."""

    close_code = 1007  # invalid frame payload data


class InvalidMessage(RemoteError):
    """Bytes that are not a valid y-protocols / crdtdoc message."""

    close_code = 1002  # protocol error


class InvalidVersionToken(UsageError, ValueError):
    """A version token that cannot be decoded (not an access token: see `AuthError`)."""


InvalidToken = InvalidVersionToken
"""The old name of `InvalidVersionToken`, kept for one release."""


class InvalidValue(UsageError, ValueError):
    """A value that cannot be stored in a shared artifact (for example an int beyond 2**53)."""


class InvalidIndex(UsageError, IndexError):
    """A text index or range outside the current text."""


class ReplicaRebuilt(ReplicaError):
    """The CRDT engine failed mid-operation; the replica discarded its damaged document and rebuilt
    it from its last good state. The operation that triggered this was not applied."""


class PendingLimitExceeded(ReplicaError):
    """The causal buffer is full: too many updates wait for missing dependencies. Resync with a peer
    (sync step 1) to fetch what is missing."""


class StorageError(CrdtdocError):
    """A saved replica file, or a hub's store, cannot be read or written."""


class HubStorageError(StorageError):
    """The hub cannot store updates now (its disk is full, its database read-only or down);
    `reason` is the database's own words. Nothing is lost: this replica keeps its edits and
    sends them again, the hub keeps retrying, and `flush` succeeds once a commit does."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the hub cannot store updates: {reason}; your edits are kept locally and will be "
            "sent again"
        )
        self.reason = reason


class SyncTimeout(LinkError, TimeoutError):
    """A connected replica's `flush` or `wait_for` did not complete in time. The data is not lost:
    it stays in the replica and keeps syncing; call again to wait longer."""


class NotConnected(LinkError):
    """The operation needs a live connection to the hub, and there is none. `reason`: the
    link's last error, when known."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.reached = False  # a hub accepted the connection, but the link did not sync


class NotFound(UsageError, LookupError):
    """A task, spec member or piece of text that is not there."""


class HistoryUnavailable(NotFound):
    """A past version this replica cannot show: it has not seen it, or no longer holds what was
    live then (it does not keep history, or joined from a document that did not)."""

    COLLECTED = (
        "its deleted content was collected: the version is older than the hub's history "
        "horizon (crdtdoc serve --history-horizon), or this replica or the hub it joined from "
        "did not keep history (it needs Replica(history=True) from the start, and a hub "
        "without --no-history)"
    )
    """Why deleted content is not held, as messages say it."""


class AmbiguousText(UsageError, ValueError):
    """`Document.replace` found the text to replace more than once."""


class AlreadyClaimed(CoordinationError):
    """Another agent already holds the task. `holder` is the agent that has it; `claimants`
    lists every agent with a claim, in assignee order."""

    def __init__(self, message: str, holder: str, claimants: list[str]) -> None:
        super().__init__(message)
        self.holder = holder
        self.claimants = claimants


class ConcurrentValues(CoordinationError):
    """A spec member holds values written concurrently; none silently wins. `values` holds each
    one with its author (`SpecValue`s); `InterfaceSpec.resolve` supersedes them."""

    def __init__(self, message: str, member: str, values: list[Any]) -> None:
        super().__init__(message)
        self.member = member
        self.values = values


ConflictError = ConcurrentValues
"""The old name of `ConcurrentValues`, kept for one release."""


class WrongKind(UsageError, TypeError):
    """An artifact opened as one kind that the room holds as another: the kind a crdtdoc agent
    recorded, or the Yjs type other clients use for that root (a ProseMirror Y.XmlFragment, a
    Y.Map, ...). crdtdoc never writes into a root of a kind it does not understand."""


class FrozenError(CoordinationError):
    """The spec is frozen: it no longer accepts writes."""


class ReviewRefused(CoordinationError):
    """A review gate does not take this agent's word (crdtdoc.gates): it completed the task it
    would verify, or proposed the freeze it would approve, or is not one of the approvers."""


class StaleRead(CoordinationError):
    """A guarded write found that others changed what it read: `changes` lists what, by whom.
    Nothing was written; read again and redo the work."""

    def __init__(self, message: str, changes: list[Any]) -> None:
        super().__init__(message)
        self.changes = changes


class LeaseHeld(CoordinationError):
    """The lease is held by another agent (`holder`), and waiting was not asked for or timed
    out."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(CoordinationError):
    """This agent no longer holds the lease (it expired, or the hub handed it on): stop acting
    on it. Writes fenced with it are refused."""


class FencedOut(CoordinationError):
    """The hub refused a write carrying an old fencing token: another agent holds the lease now.
    The write was not applied anywhere; this replica was rolled back to match the hub."""


class Deadlock(CoordinationError):
    """Waiting for the lease would close a cycle of agents waiting for each other; `cycle` names
    it (for example ["alice waits for module (held by bob)", "bob waits for ..."])."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


class Conflict(StaleRead):
    """A guarded commit lost a race at the hub: others changed what it was based on. Nothing was
    applied anywhere (this replica included); `changes` lists what changed, by whom."""


class AuthError(RemoteError):
    """A connection presented no valid token (missing, malformed, forged or expired)."""

    close_code = 4401


class Forbidden(RemoteError):
    """An authenticated agent tried something its token does not allow (a write with a read-only
    token, a change outside its artifacts, content under another agent's client id, a frozen
    spec). Nothing was applied."""

    close_code = 4403


class RateLimited(RemoteError):
    """A connection exceeded a rate or size limit of the hub."""

    close_code = 4429


class Refused(CrdtdocError):
    """The hub refused this replica's write (`code`, `reason` from the hub). The replica was reset
    to the hub's state, so it never silently diverges; redo the work within what is allowed."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class TooLarge(Refused):
    """A guarded write larger than the hub accepts in one message (its `max_message_bytes`):
    refused before it is sent, and undone here; nothing was written. Write it in parts."""


class RoomFull(RemoteError):
    """The update would make the room larger than the hub allows."""

    close_code = 4413

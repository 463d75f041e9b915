"""`LinkedReplica`: a `Replica` holding a link to a hub room; what the async `ConnectedReplica`
and the thread-based `BlockingReplica` share.

The replica keeps the document; the `HubLink` it holds keeps the connection (`crdtdoc.client.link`)
and its `ClientSession` the protocol state (`crdtdoc.protocol.client_session`). This class joins
them: every local change goes to the link, or into `HeldWrites` while a guarded commit waits for
the hub's answer; every sync message from the hub is applied; a write the hub refused resets the
replica to the hub's state; and with `state_file`, a journal on disk keeps edits made while
disconnected across a crash of the agent (they reach the hub in the sync after every reconnect).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from crdtdoc.client.coordination import Fencing
from crdtdoc.client.held_writes import HeldWrites
from crdtdoc.client.journal import Journal, read_journal
from crdtdoc.client.link import HubLink
from crdtdoc.client.urls import room_url
from crdtdoc.errors import (
    Conflict,
    CrdtdocError,
    NotConnected,
    Refused,
    StaleRead,
    SyncTimeout,
    UsageError,
)
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.client_session import ClientSession
from crdtdoc.protocol.messages import Message, SyncUpdate, encode_message
from crdtdoc.protocol.presence import Presence, check_presence
from crdtdoc.replica import Replica, ReplicaLimits
from crdtdoc.versions import Version

log = logging.getLogger("crdtdoc.client")


class Keep(enum.Enum):
    """Marks an argument left out (where None has a meaning of its own)."""

    KEEP = enum.auto()


@dataclass(frozen=True)
class LinkOptions:
    """How a connected replica links to its hub (the keyword arguments of `connect`)."""

    token: str | None = None
    client_id: int | None = None
    limits: ReplicaLimits | None = None
    state_file: str | None = None
    status: str = "active"
    backoff: Backoff | None = None  # None: Backoff()
    open_timeout: float = 10.0
    wait_synced: bool = True
    connect_timeout: float | None = None  # give up sooner if no hub even accepts a connection
    history: bool = False  # keep deleted content: `at`, `history`, `blame` and `revert` need it


class LinkedReplica(Replica):
    """A replica plus the link to one hub room that keeps it in sync (see the module docstring)."""

    def __init__(self, url: str | Sequence[str], agent: str, options: LinkOptions) -> None:
        super().__init__(
            agent, client_id=options.client_id, limits=options.limits, history=options.history
        )
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise UsageError("connect needs at least one hub URL")
        ws_urls = [room_url(u, options.token) for u in urls]
        headers = {"Authorization": f"Bearer {options.token}"} if options.token else None
        self._session = ClientSession(self, urls, options.backoff or Backoff(), options.status)
        self._link = HubLink(
            self._session,
            ws_urls,
            headers,
            options.open_timeout,
            on_sync=self._deliver_sync,
            on_activity=self._activity,
            on_refused=self._on_refused,
        )
        self._open_timeout = options.open_timeout
        self._connect_timeout = min(options.connect_timeout or math.inf, options.open_timeout)
        self._wait_synced = options.wait_synced
        self._held = HeldWrites()
        self.refused: Refused | None = None  # set when the hub refused a write (then reset)
        self._journal: Journal | None = None
        if options.state_file is not None:
            for update in read_journal(options.state_file):
                try:
                    self.apply_update(update)
                except CrdtdocError as exc:
                    log.warning("skipping a bad journal record", extra={"error": str(exc)})
            self._journal = Journal(options.state_file)
            self._journal.open(self.encode_update())
        self.on_update(self._on_commit)

    # -- what the hub has ------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The hubs' URLs, in the order they are tried."""
        return self._session.urls

    @property
    def url(self) -> str:
        """The URL of the hub in use, or tried next (several URLs: see `connect`)."""
        return self._session.url

    @property
    def connected(self) -> bool:
        return self._session.connected

    @property
    def synced(self) -> bool:
        """Connected, and the hub's answer to our state vector has arrived."""
        return self._session.synced

    @property
    def connects(self) -> int:
        """How many times a connection to a hub came up."""
        return self._session.connects

    @property
    def last_error(self) -> str | None:
        """Why the link last went down (or could not come up), if it did."""
        return self._session.last_error

    @property
    def store_error(self) -> str | None:
        """The hub's words while it says its store cannot commit; None otherwise."""
        return self._session.store_error

    @property
    def admission(self) -> CrdtdocError | None:
        """Set when the hub would not let this agent in (a bad token, a room out of scope)."""
        return self._session.admission

    @property
    def max_message_bytes(self) -> int | None:
        """The largest message the hub accepts, as its welcome said (None before one)."""
        return self._session.max_message_bytes

    @property
    def durable(self) -> Version:
        """The newest version the hub reported as durably stored."""
        return self._session.durable.version

    def is_durable(self, version: Version | None = None) -> bool:
        """Whether the hub has durably stored everything in `version` (default: this replica)."""
        return self._session.durable.covers(version or self.version())

    def peers(self) -> list[Presence]:
        """Everyone else present in the room, from their awareness states."""
        return sorted(
            (p for cid, p in list(self._session.presence.items()) if cid != self.client_id),
            key=lambda p: (p.agent or "", p.client_id),
        )

    def set_presence(self, status: str | None = None, task: str | Keep | None = Keep.KEEP) -> None:
        """Changes what this agent publishes about itself: its status, and its current task
        (`task=None` clears it; leaving `task` out keeps it). Raises `InvalidValue` for a
        status or task that is not a str of at most 200 characters."""
        session = self._session
        check_presence(
            session.status if status is None else status,
            None if isinstance(task, Keep) else task,
        )
        if status is not None:
            session.status = status
        if not isinstance(task, Keep):
            session.task = task
        self._link.call(self._link.publish_presence)

    # -- hooks for the async / threaded variants (called on the link's loop) ---------------

    def _deliver_sync(self, message: Message) -> None:
        """A sync message from the hub arrived: apply it (the async variant) or hand it to the
        owning thread (the blocking variant)."""
        self._apply_from_hub(message)

    def _activity(self) -> None:
        """Something arrived (durability, an update): waiters may re-check."""

    def _on_refused(self, refused: Refused) -> None:
        """The hub refused a write of ours and closed the link (the blocking variant resets in
        the owning thread instead)."""
        self._reset_to_hub(refused)

    # -- the replica side ------------------------------------------------------------------

    def _apply_from_hub(self, message: Message) -> None:
        for reply in self._session.apply_sync(message):
            self._link.send(reply)

    def _on_commit(self, update: bytes, local: bool) -> None:
        from_hub = self._session.applying_sync
        if not from_hub and self._held.hold(update):
            self._activity()  # sent (or undone) when the guarded write is decided
            return
        if self._journal is not None:
            self._journal.append(update, sync=local)
            if self._journal.needs_compaction():
                # The document itself, not encode_update(): no sync point inside a listener.
                self._journal.compact(self._doc.get_update())
        if not from_hub:  # local edits, and updates applied from elsewhere
            self._link.send(encode_message(SyncUpdate(update)))
        self._activity()

    def _reset_to_hub(self, refused: Refused) -> None:
        """This replica now differs from the hub: start over from the hub's state (fresh client
        id), and tell the agent (`refused`, raised by the next flush)."""
        log.warning(
            "the hub refused a write; resyncing",
            extra={"code": refused.code, "reason": str(refused)},
        )
        self.refused = refused
        self._reset()
        self._session.restart_sync()
        self._activity()

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- waiting for the hub ---------------------------------------------------------------

    def _opened(self) -> bool:
        """Whether opening the link is settled: synced, or refused admission."""
        return self._session.opened

    def _reachable(self) -> bool:
        return self._session.reachable

    def _unreachable(self) -> NotConnected:
        return self._session.unreachable(self._open_timeout, self._connect_timeout)

    def _flush_done(self, target: Version) -> bool:
        """Whether a `flush` for `target` may stop waiting: durable, refused, or the hub says
        its store cannot commit."""
        return (
            self._session.durable.covers(target)
            or self.refused is not None
            or self._session.store_error is not None
        )

    def _raise_store_error(self, target: Version) -> None:
        failure = self._session.store_failure(target)
        if failure is not None:
            raise failure

    def _raise_refused(self) -> None:
        if self.refused is not None:
            refused, self.refused = self.refused, None
            raise refused

    def _timeout_error(self, what: str, timeout: float) -> SyncTimeout:
        return self._session.timeout_error(what, timeout)

    async def _request(
        self, op: str, args: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        """One coordination request decided by the hub (see `HubLink.request`)."""
        return await self._link.request(op, args, timeout)

    # -- guarded writes: held until the hub decides ----------------------------------------

    def _fresh_expect(self, expect: Version | str | None, on: Iterable[object]) -> Version | None:
        """A guarded commit's `expect` as a `Version`, first checked against what this replica
        already knows: `Conflict` at once, before anything is held or sent."""
        if isinstance(expect, str):
            expect = Version.from_token(expect)
        if expect is not None:
            try:
                self._check_fresh(expect, on)
            except StaleRead as stale:
                raise Conflict(str(stale), stale.changes) from None
        return expect

    def _runs_extend(self) -> bool:
        return not self._held.active and super()._runs_extend()

    def _begin_hold(self) -> None:
        if not (self._session.connected and self._session.welcomed):
            raise NotConnected(
                f"a guarded write needs the hub, and the link to {self.url} is down "
                f"({self.last_error or 'connecting'})"
            )
        self._take_checkpoint()
        self._log_pinned = True  # the held updates stay in the log, to be undone if refused
        self._held.begin()

    def _rollback_hold(self) -> None:
        held = self._held.drop()
        self._log_pinned = False
        if held:
            self._undo(held)
        self._activity()

    def _hold_request(
        self, expect: Version | None, on: Iterable[object], fence: Fencing | None
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """The held updates and the `commit` request that submits them (None: nothing held,
        and the hold is over)."""
        limit = self._session.max_message_bytes
        held, args = self._held.request(self.client_id, expect, on, fence, limit, self.url)
        if args is None:
            self._log_pinned = False
        return held, args

    def _settle_hold(self, held: list[bytes]) -> None:
        """The hub applied the `held` updates: they are journaled, and edits made while it
        decided go on their way as usual."""
        later = self._held.settle(held)
        self._log_pinned = False
        for update in held:
            if self._journal is not None:
                self._journal.append(update, sync=True)
        for update in later:
            self._on_commit(update, True)

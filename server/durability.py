"""`DurableAnnouncer`: tells a room's crdtdoc clients the version the store holds durably.

At once, unless it was told less than an interval ago (`DURABLE_INTERVAL`, longer for large
versions); then once, with the newest version, when the interval ends. A version carries the
room's whole delete set, so under a stream of commits this bounds what acknowledgements cost (the
trace benchmark spent most of its time on them).

While the store cannot commit, the clients are told why (`store_failing`): at once when it starts
failing or the reason changes, and a client that joins meanwhile at the committer's next retry
(within a second); when a commit succeeds again, at once, by a `durable` without the reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from crdtdoc.protocol.extension import Durable, encode_extension
from crdtdoc.protocol.messages import encode_message
from crdtdoc.versions import Version
from server.peer import Peer
from server.schedule import Scheduler

DURABLE_INTERVAL = 0.02
"""Seconds between two durable-version announcements to a room's clients, at least."""
DURABLE_BYTES_PER_SECOND = 2 * 1024 * 1024
"""Announcement bytes per second a room may send each client: a large version (a long history of
scattered deletions) is announced less often, down to one per 100 ms per 200 KB of version."""


class DurableAnnouncer:
    """The durable version of one room, and when its clients were last told it."""

    def __init__(self, peers: Callable[[], Iterable[Peer]], scheduler: Scheduler) -> None:
        self.version = Version()
        self._peers = peers
        self._scheduler = scheduler
        self._told_at = 0.0
        self._due = False  # an announcement is scheduled
        self._gap = DURABLE_INTERVAL  # the least time until the next one
        self.store_error: str | None = None  # why the store cannot commit now
        self._warned: weakref.WeakSet[Peer] = weakref.WeakSet()  # told the store_error

    def message(self) -> bytes:
        return encode_message(encode_extension(Durable(self.version, self.store_error)))

    def store_failing(self, reason: str | None) -> None:
        """The store cannot commit, for `reason` (None: it commits again). Called at every
        failed attempt: clients not yet told this reason are told now."""
        if reason is None:
            if self.store_error is not None:
                self.store_error = None
                self._warned = weakref.WeakSet()
                self._send(self.message(), lambda peer: True)
            return
        if reason != self.store_error:
            self.store_error = reason
            self._warned = weakref.WeakSet()
        self._send(self.message(), lambda peer: peer not in self._warned)
        self._warned.update(peer for peer in self._peers() if peer.extensions)

    def _send(self, message: bytes, to: Callable[[Peer], bool]) -> None:
        for peer in self._peers():
            if peer.extensions and to(peer):
                peer.send(message)

    def durable(self, version: Version) -> None:
        """`version` is durable now: tell the clients, at once or at the end of the interval."""
        self.version = version
        wait = self._told_at + self._gap - self._scheduler.monotonic()
        if wait > 0:
            if not self._due:
                self._due = True
                self._scheduler.call_later(wait, self._tell)
            return
        self._tell()

    def _tell(self) -> None:
        self._due = False
        self._told_at = self._scheduler.monotonic()
        message = self.message()
        self._gap = max(DURABLE_INTERVAL, len(message) / DURABLE_BYTES_PER_SECOND)
        self._send(message, lambda peer: True)

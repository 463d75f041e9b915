"""`DurableAnnouncer`: tells a room's crdtdoc clients the version the store holds durably.

At once, unless it was told less than an interval ago (`DURABLE_INTERVAL`, longer for large
versions); then once, with the newest version, when the interval ends. A version carries the
room's whole delete set, so under a stream of commits this bounds what acknowledgements cost (the
trace benchmark spent most of its time on them).

Clients that speak protocol 2 are told a delta instead (PROTOCOL.md section 8): what became
durable since the previous announcement (`told`), encoded once per announcement and shared by all
of them. Every such client holds at least `told`: it was told every announcement since its
welcome, and its welcome carried the durable version of that moment, which includes the `told` of
then (durable versions only grow). So a client that joined while an announcement was held back
for the interval misses nothing: the delta it gets is against an older version than its own.
A protocol 1 client is told the full version, as before.

While the store cannot commit, the clients are told why (`store_failing`): at once when it starts
failing or the reason changes, and a client that joins meanwhile at the committer's next retry
(within a second); when a commit succeeds again, at once, by a `durable` without the reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from crdtdoc.protocol.extension import Durable, durable_delta, encode_extension
from crdtdoc.protocol.messages import encode_message
from crdtdoc.server.peer import Peer
from crdtdoc.server.schedule import Scheduler
from crdtdoc.versions import Version

DURABLE_INTERVAL = 0.02
"""Seconds between two durable-version announcements to a room's clients, at least."""
DURABLE_BYTES_PER_SECOND = 2 * 1024 * 1024
"""Announcement bytes per second a room may send each client: a large version (a long history of
scattered deletions) is announced less often, down to one per 100 ms per 200 KB of version."""


class DurableAnnouncer:
    """The durable version of one room, and when its clients were last told it."""

    def __init__(self, peers: Callable[[], Iterable[Peer]], scheduler: Scheduler) -> None:
        self.version = Version()
        self.told = Version()  # the last version announced to all: every delta peer holds it
        self._peers = peers
        self._scheduler = scheduler
        self._told_at = 0.0
        self._due = False  # an announcement is scheduled
        self._gap = DURABLE_INTERVAL  # the least time until the next one
        self.store_error: str | None = None  # why the store cannot commit now
        self._warned: weakref.WeakSet[Peer] = weakref.WeakSet()  # told the store_error

    def restore(self, version: Version) -> None:
        """The room was loaded with `version` durable, before any client joined."""
        self.version = self.told = version

    def message(self) -> bytes:
        """The full durable version (and store error): for protocol 1 clients, and for a client
        whose deltas may have been lost (a resync)."""
        return encode_message(encode_extension(Durable(self.version, self.store_error)))

    def delta_message(self, since: Version) -> bytes:
        """The durable version as a delta for a client known to hold `since` (the store error
        in full)."""
        delta = durable_delta(self.version, since)
        return encode_message(encode_extension(Durable(delta, self.store_error, delta=True)))

    def store_failing(self, reason: str | None) -> None:
        """The store cannot commit, for `reason` (None: it commits again). Called at every
        failed attempt: clients not yet told this reason are told now."""
        if reason is None:
            if self.store_error is not None:
                self.store_error = None
                self._warned = weakref.WeakSet()
                self._send(lambda peer: True)
            return
        if reason != self.store_error:
            self.store_error = reason
            self._warned = weakref.WeakSet()
        self._send(lambda peer: peer not in self._warned)
        self._warned.update(peer for peer in self._peers() if peer.extensions)

    def _send(self, to: Callable[[Peer], bool]) -> int:
        """Tells the newest version to the opted-in peers `to` accepts: a delta against `told`
        to those speaking protocol 2, the full version to the others, each form encoded once
        (only if someone gets it). Returns the size of the larger message sent (0: none)."""
        full: bytes | None = None
        delta: bytes | None = None
        for peer in self._peers():
            if not peer.extensions or not to(peer):
                continue
            if peer.durable_deltas:
                delta = delta or self.delta_message(self.told)
                peer.send(delta)
            else:
                full = full or self.message()
                peer.send(full)
        return max(len(full or b""), len(delta or b""))

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
        size = self._send(lambda peer: True)
        self.told = self.version  # every delta peer holds it now (and every later joiner will)
        self._gap = max(DURABLE_INTERVAL, size / DURABLE_BYTES_PER_SECOND)

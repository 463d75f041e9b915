"""`RoomPresence`: who is present in a room (y-protocols awareness), relayed between its peers
and, with a cluster, between hubs. No I/O: it hands messages to the room's `broadcast` and
`publish` callbacks and reads time from injected clocks.

A connection changes only the presence entries it published (or ones nobody holds), at most
`MAX_AWARENESS_CLIENTS_PER_PEER` of them; when a local client's presence ends, its entry is
dropped (relayed as removed, then forgotten). Entries from other hubs are taken unless a client
here holds the id, and expire when their hub stops renewing them.

A *kept status* (`keep_status`) is presence the hub holds on an agent's behalf for a set time,
for agents that run one command at a time (`crdtdoc status`): one entry per agent, under a client
id no Yjs client uses (above 2**32), stamped with the agent's authenticated name, renewed by the
hub so Yjs editors do not time it out, removed when its time ends or the agent clears it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from crdtdoc.errors import CrdtdocError, InvalidMessage, RateLimited
from crdtdoc.protocol.awareness import (
    KEPT_CLIENT_IDS,
    AwarenessEntry,
    decode_awareness,
    encode_awareness,
    presence_state,
)
from crdtdoc.protocol.extension import Reply, Request
from crdtdoc.protocol.messages import Awareness, encode_message
from crdtdoc.protocol.requests import ReplyCode, RequestError, SetStatus
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.peer import Peer

log = logging.getLogger("crdtdoc.hub.room")

MAX_AWARENESS_CLIENTS_PER_PEER = 16
"""Awareness client ids one connection may publish (a Yjs provider uses one)."""
HOLD_SECONDS = 0.5
"""How long presence over a connection's rate waits before it is tried again (the newest only)."""
MAX_KEPT_STATUSES = 256
"""Kept statuses one room holds (one per agent)."""
KEPT_RENEW_SECONDS = 15.0
"""How often a kept status is sent again (y-protocols clients drop a state after 30 s)."""

Broadcast = Callable[[bytes, "Peer | None"], None]
"""Sends a message to every peer of the room but the one given."""


@dataclass(frozen=True, slots=True)
class KeptStatus:
    """A status the hub keeps for an agent: its awareness entry, and when it ends (Unix time)."""

    entry: AwarenessEntry
    until: float


class RoomPresence:
    """The awareness entries of one room, and where each came from."""

    def __init__(
        self,
        room: str,
        max_state_bytes: int,
        limits: RateLimits,
        broadcast: Broadcast,
        publish: Callable[[bytes], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        call_later: Callable[[float, Callable[[], None]], None] | None = None,
        kept: dict[int, KeptStatus] | None = None,
    ) -> None:
        self.room = room
        self.entries: dict[int, AwarenessEntry] = {}
        self.seen: dict[int, float] = {}  # client id -> Unix time of its last presence
        self._remote: dict[int, float] = {}  # client id -> last heard (other hubs)
        self._max_state_bytes = max_state_bytes
        self._limits = limits
        self._broadcast = broadcast
        self._publish = publish
        self._clock = clock
        self._wall_clock = wall_clock
        self._call_later = call_later
        self._held: dict[Peer, bytes] = {}  # the newest message of a peer over its rate
        # The room's kept statuses: a dict the hub owns, so they outlive the room's unloading.
        self.kept: dict[int, KeptStatus] = {} if kept is None else kept
        self._closed = False
        for client, status in list(self.kept.items()):  # the room is loaded (again)
            if status.until <= self._wall_clock():
                del self.kept[client]
                continue
            self.entries[client] = status.entry
            self.seen[client] = self._wall_clock()
            self._renew_later(client)

    def present(self) -> list[AwarenessEntry]:
        return [e for e in self.entries.values() if not e.removed]

    def message(self, entries: list[AwarenessEntry] | None = None) -> bytes | None:
        """An awareness message with `entries` (everyone present by default), None if none."""
        entries = self.present() if entries is None else entries
        return encode_message(Awareness(encode_awareness(entries))) if entries else None

    def receive(self, peer: Peer, data: bytes) -> None:
        """A peer's awareness message. Raises `RemoteError` for bad input. Presence faster than
        the rate is coalesced, not refused: the newest message waits and is taken when the
        rate allows (a held arrow key in an editor sends a cursor per key repeat, and stock
        clients never reconnect after a 44xx close)."""
        entries = decode_awareness(data, max_state_bytes=self._max_state_bytes)
        # Stock y-websocket clients echo every presence change they receive; only entries this
        # connection may own (its own, or ones nobody holds) count against its presence rate.
        if any(
            e.client in peer.awareness_clients
            or e.client not in self.entries
            or self.entries[e.client].removed
            for e in entries
        ):
            exceeded = self._limits.awareness(peer.rate_key)
            if exceeded:
                if self._call_later is None:
                    raise RateLimited(f"presence refused: {exceeded}")
                if peer not in self._held:
                    self._call_later(HOLD_SECONDS, lambda: self._release(peer))
                self._held[peer] = data  # replaces an older held one: only the newest counts
                return
        accepted = []
        for entry in entries:
            if entry.client >= KEPT_CLIENT_IDS:
                continue  # reserved for statuses the hub keeps: no connection may publish them
            current = self.entries.get(entry.client)
            if (
                current is not None
                and not current.removed
                and entry.client not in peer.awareness_clients
            ):
                continue  # another connection's presence: not this peer's to change
            if current is not None and not _newer(entry, current):
                continue  # stale
            if entry.removed:
                if current is None or current.removed:
                    continue  # nothing to remove (stock clients echo the removals they get)
                peer.awareness_clients.discard(entry.client)
                self._forget(entry.client)
                accepted.append(entry)
                continue
            if (
                entry.client not in peer.awareness_clients
                and len(peer.awareness_clients) >= MAX_AWARENESS_CLIENTS_PER_PEER
            ):
                raise InvalidMessage(
                    f"a connection may publish presence for at most "
                    f"{MAX_AWARENESS_CLIENTS_PER_PEER} client ids"
                )
            peer.awareness_clients.add(entry.client)
            self.entries[entry.client] = entry
            self.seen[entry.client] = self._wall_clock()
            accepted.append(entry)
        self._tell(accepted, exclude=peer)

    def _release(self, peer: Peer) -> None:
        """Takes a peer's held presence message, if the peer is still there."""
        data = self._held.pop(peer, None)
        if data is None:  # the peer left meanwhile
            return
        try:
            self.receive(peer, data)
        except CrdtdocError as exc:  # it was valid when it came; anything else is logged
            log.info("held presence dropped", extra={"room": self.room, "error": str(exc)})

    def leave(self, peer: Peer) -> None:
        """The peer left: its presence entries are removed, for everyone."""
        self._held.pop(peer, None)
        gone = []
        for client in peer.awareness_clients:
            entry = self.entries.get(client)
            if entry is not None and not entry.removed:
                gone.append(AwarenessEntry(client, entry.clock + 1, "null"))
                self._forget(client)
        self._tell(gone, exclude=peer)

    def keep_status(self, agent: str, status: str | None, task: str | None, ttl: float) -> int:
        """Publishes `agent`'s status (and task) for `ttl` seconds on its behalf, replacing its
        previous kept status; `status=None` clears it. Returns the entry's client id. Raises
        `RateLimited` when the room holds `MAX_KEPT_STATUSES` others already."""
        client = kept_client_id(agent)
        current = self.entries.get(client)
        if status is None:
            if client in self.kept:
                self._end_kept(client)
            return client
        if client not in self.kept and len(self.kept) >= MAX_KEPT_STATUSES:
            raise RateLimited(f"this room keeps {MAX_KEPT_STATUSES} statuses already")
        until = self._wall_clock() + ttl
        clock = max(current.clock + 1 if current is not None else 0, int(self._wall_clock()))
        entry = AwarenessEntry(client, clock, presence_state(agent, status, task, until))
        self._set_kept(client, KeptStatus(entry, until))
        self._renew_later(client)
        return client

    def status_request(self, peer: Peer, request: Request) -> Reply:
        """Answers `status` ({"status": str | None, "task": str | None, "ttl": seconds}): the
        caller's agent (its authenticated name) shows with that status until the time is up;
        None clears it. Refused for read-only tokens, as their presence is."""
        if peer.grant is not None and peer.grant.read_only:
            return Reply(
                request.id, {}, ReplyCode.FORBIDDEN, "a read-only token cannot publish presence"
            )
        try:
            asked = SetStatus.from_args(request.args)
            client = self.keep_status(str(peer.agent), asked.status, asked.task, asked.ttl)
        except RequestError as exc:
            return Reply(request.id, {}, exc.code, str(exc))
        except RateLimited as exc:
            return Reply(request.id, {}, ReplyCode.RATE_LIMITED, str(exc))
        ttl = asked.ttl if asked.status is not None else 0.0
        return Reply(request.id, {"client": client, "ttl": ttl})

    def close(self) -> None:
        """The room was unloaded: its kept statuses stay with the hub, unrenewed until the room
        is loaded again (nobody is there to see them)."""
        self._closed = True

    def _set_kept(self, client: int, status: KeptStatus) -> None:
        self.kept[client] = status
        self.entries[client] = status.entry
        self.seen[client] = self._wall_clock()
        self._tell([status.entry], exclude=None)

    def _renew_later(self, client: int) -> None:
        """Schedules the renewal of a kept status as it is now (its clock says which)."""
        status = self.kept.get(client)
        if self._call_later is not None and status is not None:
            left = status.until - self._wall_clock()
            clock = status.entry.clock
            self._call_later(
                max(min(left, KEPT_RENEW_SECONDS), 0.0), lambda: self._renew_kept(client, clock)
            )

    def _renew_kept(self, client: int, clock: int) -> None:
        """Sends a kept status again (a newer clock, the same state), or ends it when its time
        is up; does nothing once it was replaced or cleared (`clock` is no longer current), or
        once the room was unloaded."""
        status = self.kept.get(client)
        if self._closed or status is None or status.entry.clock != clock:
            return
        if status.until - self._wall_clock() <= 0.05:
            self._end_kept(client)
            return
        renewed = AwarenessEntry(client, clock + 1, status.entry.state)
        self._set_kept(client, KeptStatus(renewed, status.until))
        self._renew_later(client)

    def _end_kept(self, client: int) -> None:
        entry = self.entries.get(client)
        self.kept.pop(client, None)
        self._forget(client)
        if entry is not None and not entry.removed:
            self._tell([AwarenessEntry(client, entry.clock + 1, "null")], exclude=None)

    def _forget(self, client: int) -> None:
        """A local client's presence ended: nothing is kept, so memory follows who is present,
        and the client's presence shows at once when it reconnects (whatever its clock)."""
        self.entries.pop(client, None)
        self.seen.pop(client, None)

    def apply_remote(self, data: bytes, local: set[int]) -> None:
        """Presence changes of another hub's clients: taken unless a client here (`local`)
        holds the id."""
        try:
            entries = decode_awareness(data, max_state_bytes=self._max_state_bytes)
        except CrdtdocError as exc:
            log.warning(
                "bad presence from another hub", extra={"room": self.room, "error": str(exc)}
            )
            return
        accepted = []
        now = self._clock()
        for entry in entries:
            current = self.entries.get(entry.client)
            if entry.client in local:
                continue
            if current is not None and not _newer(entry, current):
                if current.clock == entry.clock and not entry.removed:
                    self._remote[entry.client] = now  # a renewal we already had
                continue
            self.entries[entry.client] = entry
            self.seen[entry.client] = self._wall_clock()
            if entry.removed:
                self._remote.pop(entry.client, None)
            else:
                self._remote[entry.client] = now
            accepted.append(entry)
        message = self.message(accepted)
        if message is not None:
            self._broadcast(message, None)

    def local(self, local: set[int]) -> bytes | None:
        """The presence of this hub's own clients (`local`), encoded (None if nobody)."""
        mine = [e for e in self.present() if e.client in local]
        return encode_awareness(mine) if mine else None

    def expire_remote(self, now: float, timeout: float) -> None:
        """Removes presence another hub stopped renewing (it died, or lost its clients)."""
        gone = []
        for client, heard in list(self._remote.items()):
            entry = self.entries.get(client)
            if now - heard <= timeout or entry is None:
                continue
            del self._remote[client]
            if not entry.removed:
                gone.append(AwarenessEntry(client, entry.clock + 1, "null"))
                self.entries[client] = gone[-1]
        message = self.message(gone)
        if message is not None:
            self._broadcast(message, None)

    def _tell(self, entries: list[AwarenessEntry], exclude: Peer | None) -> None:
        """Relays changes of this hub's clients to the room's other peers and other hubs."""
        message = self.message(entries)
        if message is None:
            return
        self._broadcast(message, exclude)
        if self._publish is not None:
            self._publish(encode_awareness(entries))


def _newer(entry: AwarenessEntry, current: AwarenessEntry) -> bool:
    """Whether `entry` supersedes `current` (a higher clock, or a removal at the same clock)."""
    return entry.clock > current.clock or (
        entry.clock == current.clock and entry.removed and not current.removed
    )


def kept_client_id(agent: str) -> int:
    """The awareness client id of `agent`'s kept status: from 2**32 up (Yjs clients pick 32-bit
    ids), so it never collides with a connected client's own."""
    digest = hashlib.sha256(agent.encode("utf-8", "surrogatepass")).digest()
    return KEPT_CLIENT_IDS + int.from_bytes(digest[:5], "big")

"""Several hubs on one PostgreSQL database: fan-out through Redis, truth in the log.

Every update a hub stores gets the next position in its room's log (`crdtdoc.server.pgstore`). Once
the transaction commits, the hub publishes (position, update) on the room's Redis channel; hubs that
serve the room apply it and pass it to their own clients. Redis pub/sub is fast but forgets: a
message is lost when a subscriber is disconnected, slow, or Redis restarts. So nothing relies on
it alone:

- Each hub knows which positions of each room it has applied (`SeqTracker`). A message whose
  position is not the next one reveals a gap; if the gap is still open a moment later (messages
  from two hubs can cross), the hub reads what it lacks from PostgreSQL (anti-entropy).
- Every `anti_entropy_seconds` the hub compares its rooms' positions with the database's, which
  catches a lost *last* message, and after a Redis reconnect it catches up every room at once.
- Updates go through the room's replica, which applies them in causal order whatever order they
  arrive in, and ignores what it already has; so a duplicate or reordered message is harmless,
  and a hub never stores what it received from another (no loops between instances).
- Only committed updates are published, so a hub never shows its clients data that a crash could
  take back from the database.

Presence (awareness) is not stored: each hub publishes the presence changes of its own clients on
the room's presence channel, tagged with its id, and relays the others' to its clients. A hub that
starts serving a room asks the others for their current presence; an entry another hub stopped
renewing (that hub died) expires after `PRESENCE_TIMEOUT`, as y-protocols' own 30 s rule says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from crdtdoc.protocol.backoff import Backoff
from crdtdoc.server.pgstore import Fetched, PostgresStore

log = logging.getLogger("crdtdoc.hub.cluster")

FROM_LOG = object()
"""`Replica.commit_origin` of updates read from the shared log: stored already, not again."""

ROOM_CHANNEL = b"crdtdoc:room:"
LEASE_CHANNEL = b"crdtdoc:lease:"
PRESENCE_CHANNEL = b"crdtdoc:presence:"
PRESENCE_TIMEOUT = 30.0
"""Seconds after which presence relayed from another hub, not renewed, counts as gone."""
INLINE_BYTES = 256 * 1024
"""Updates larger than this are announced by position only; hubs read them from PostgreSQL."""
GAP_GRACE = 0.05
"""Seconds a gap may stay open (messages from two hubs crossing) before the hub reads the log."""
_DATA, _NOTICE = 0, 1
_ENTRIES, _QUERY = 0, 1  # presence messages: awareness entries, or "send me yours"


class SeqTracker:
    """Which entries of a room's log this hub has: all of 1..`applied`, plus those in `ahead`."""

    def __init__(self, applied: int = 0) -> None:
        self.applied = applied
        self.ahead: set[int] = set()

    def add(self, seq: int) -> bool:
        """Records entry `seq`; False if it was already recorded."""
        if seq <= self.applied or seq in self.ahead:
            return False
        self.ahead.add(seq)
        while self.applied + 1 in self.ahead:
            self.applied += 1
            self.ahead.discard(self.applied)
        return True

    def skip_to(self, seq: int) -> None:
        """Everything up to `seq` is present (a snapshot covering it was applied)."""
        if seq > self.applied:
            self.applied = seq
            self.ahead = {s for s in self.ahead if s > seq}
            while self.applied + 1 in self.ahead:
                self.applied += 1
                self.ahead.discard(self.applied)

    @property
    def gap(self) -> bool:
        """Entries past a missing one are present: the missing one must be read from the log."""
        return bool(self.ahead)


def encode_entry(seq: int, data: bytes) -> bytes:
    if len(data) > INLINE_BYTES:
        return bytes([_NOTICE]) + seq.to_bytes(8, "big")
    return bytes([_DATA]) + seq.to_bytes(8, "big") + data


def decode_entry(payload: bytes) -> tuple[int, bytes | None] | None:
    """(position, update or None for a notice), or None for a malformed payload."""
    if len(payload) < 9 or payload[0] not in (_DATA, _NOTICE):
        return None
    seq = int.from_bytes(payload[1:9], "big")
    return seq, (payload[9:] if payload[0] == _DATA else None)


class SharedRoom(Protocol):
    """What the cluster needs of a loaded room (`crdtdoc.server.room.Room`)."""

    name: str
    seqs: SeqTracker

    def apply_stored(self, seq: int, data: bytes) -> bool: ...

    def apply_fetched(self, fetched: Fetched) -> None: ...

    def apply_presence(self, hub: bytes, data: bytes) -> None: ...

    def local_presence(self) -> bytes | None: ...


class Cluster:
    """A hub's link to the other hubs (see the module docstring)."""

    def __init__(
        self,
        redis_url: str | None,
        store: PostgresStore,
        rooms: Callable[[], Mapping[str, SharedRoom]],
        *,
        anti_entropy_seconds: float = 1.0,
        drop_rate: float = 0.0,
    ) -> None:
        self._url = redis_url
        self.store = store
        self._rooms = rooms
        self._anti_entropy = anti_entropy_seconds
        self._drop_rate = drop_rate  # fault injection for tests: ignore this share of messages
        self._redis: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changes: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        self._outgoing: list[tuple[bytes, bytes]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.lease_listeners: list[Callable[[str, str], None]] = []
        self.hub_id = uuid.uuid4().bytes  # tags this hub's presence messages
        self.connected = False
        self.received = 0
        self.dropped = 0  # by fault injection
        self.caught_up = 0  # log entries read from PostgreSQL rather than received
        self.reconnects = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._url is not None:
            self._redis = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=2.0, socket_timeout=None
            )
            self._tasks.append(loop.create_task(self._listen(), name="cluster-listen"))
        self._tasks.append(loop.create_task(self._anti_entropy_loop(), name="anti-entropy"))

    async def close(self) -> None:
        for task in [*self._tasks, *self._catching_up.values()]:
            task.cancel()
        for task in [*self._tasks, *self._catching_up.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        if self._redis is not None:
            await self._redis.aclose()

    # -- rooms joining and leaving -----------------------------------------------------------

    def watch(self, room: str) -> None:
        """Start receiving the room's updates (then catch up: see `_listen`)."""
        self._changes.put_nowait((True, room))

    def unwatch(self, room: str) -> None:
        self._changes.put_nowait((False, room))

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, room: str, seq: int, data: bytes) -> None:
        """Announces a committed log entry to the other hubs (batched, fire and forget)."""
        self._publish(ROOM_CHANNEL + room.encode(), encode_entry(seq, data))

    def publish_presence(self, room: str, awareness: bytes) -> None:
        """Relays presence changes of this hub's clients to the other hubs."""
        self._publish(PRESENCE_CHANNEL + room.encode(), bytes([_ENTRIES]) + self.hub_id + awareness)

    def _ask_presence(self, room: str) -> None:
        self._publish(PRESENCE_CHANNEL + room.encode(), bytes([_QUERY]) + self.hub_id)

    def _publish(self, channel: bytes, payload: bytes) -> None:
        if self._redis is None:
            return
        self._outgoing.append((channel, payload))
        self._kick()

    def publish_lease(self, room: str, name: str) -> None:
        """Tells every hub that lease `name` of `room` changed (its waiters look again)."""
        self._publish(LEASE_CHANNEL + room.encode(), name.encode())

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        redis = self._redis
        while self._outgoing and redis is not None:
            batch, self._outgoing = self._outgoing, []
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
            except (RedisError, OSError) as exc:  # other hubs catch up from the log
                log.info("publish failed", extra={"error": str(exc), "messages": len(batch)})

    # -- receiving ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Owns the subscription: applies (un)subscribe requests between reads, reconnects with
        backoff, and catches every room up after each (re)connect."""
        redis = self._redis
        if redis is None:
            return
        backoff = Backoff(initial=0.1, maximum=2.0)
        attempt = 0
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.psubscribe(LEASE_CHANNEL + b"*")
                watched = set(self._rooms())
                for room in watched:
                    await pubsub.subscribe(
                        ROOM_CHANNEL + room.encode(), PRESENCE_CHANNEL + room.encode()
                    )
                if attempt or self.reconnects:
                    log.info("redis link up", extra={"rooms": len(watched)})
                self.connected = True
                attempt = 0
                self.catch_up_all()  # whatever was published while we were away
                while True:
                    while not self._changes.empty():
                        add, room = self._changes.get_nowait()
                        channels = (ROOM_CHANNEL + room.encode(), PRESENCE_CHANNEL + room.encode())
                        if add:
                            await pubsub.subscribe(*channels)
                        else:
                            await pubsub.unsubscribe(*channels)
                    message = await pubsub.get_message(timeout=0.05)
                    if message is not None:
                        self._receive(message)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis link down", extra={"error": str(exc)})
                self.connected = False
                self.reconnects += 1
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1

    def _receive(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        data = message.get("data")
        if not isinstance(channel, bytes):
            return
        if kind == "subscribe" and channel.startswith(ROOM_CHANNEL):
            # Subscribed: what was committed before this instant is in the log.
            self.catch_up(channel[len(ROOM_CHANNEL) :].decode(errors="replace"))
            return
        if kind == "subscribe" and channel.startswith(PRESENCE_CHANNEL):
            # Subscribed: tell what this hub has (published before now, it reached nobody
            # subscribed late) and ask the others (a question sent before now missed us).
            name = channel[len(PRESENCE_CHANNEL) :].decode(errors="replace")
            served = self._rooms().get(name)
            mine = served.local_presence() if served is not None else None
            if mine is not None:
                self.publish_presence(name, mine)
            self._ask_presence(name)
            return
        if not isinstance(data, bytes):
            return
        if kind == "pmessage" and channel.startswith(LEASE_CHANNEL):
            room = channel[len(LEASE_CHANNEL) :].decode(errors="replace")
            for listener in self.lease_listeners:
                listener(room, data.decode(errors="replace"))
            return
        if kind == "message" and channel.startswith(PRESENCE_CHANNEL):
            self._receive_presence(channel[len(PRESENCE_CHANNEL) :].decode(errors="replace"), data)
            return
        if kind != "message" or not channel.startswith(ROOM_CHANNEL):
            return
        self.received += 1
        if self._drop_rate and random.random() < self._drop_rate:
            self.dropped += 1
            return
        target = self._rooms().get(channel[len(ROOM_CHANNEL) :].decode(errors="replace"))
        entry = decode_entry(data)
        if target is None or entry is None:
            return
        seq, update = entry
        if update is None or not target.apply_stored(seq, update):
            self.catch_up(target.name)  # announced only, or damaged: read it from the log
        elif target.seqs.gap:
            self.catch_up(target.name, delay=GAP_GRACE)

    def _receive_presence(self, name: str, payload: bytes) -> None:
        room = self._rooms().get(name)
        if room is None or len(payload) < 17 or payload[1:17] == self.hub_id:
            return
        if payload[0] == _QUERY:
            mine = room.local_presence()
            if mine is not None:
                self.publish_presence(name, mine)
        elif payload[0] == _ENTRIES:
            room.apply_presence(payload[1:17], payload[17:])

    # -- anti-entropy -------------------------------------------------------------------------

    def catch_up_all(self, names: Iterable[str] | None = None) -> None:
        for name in list(self._rooms()) if names is None else names:
            self.catch_up(name)

    def catch_up(self, name: str, delay: float = 0.0) -> None:
        """Reads what the room lacks from the log (one reader per room at a time)."""
        running = self._catching_up.get(name)
        if running is not None and not running.done():
            return
        self._catching_up[name] = asyncio.get_running_loop().create_task(
            self._catch_up(name, delay), name=f"catch-up {name}"
        )

    async def _catch_up(self, name: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            while True:
                room = self._rooms().get(name)
                if room is None:
                    return
                before = room.seqs.applied
                fetched = await self.store.fetch(name, before)
                room = self._rooms().get(name)
                if room is None:
                    return
                self.caught_up += len(fetched.entries)
                room.apply_fetched(fetched)
                if room.seqs.applied >= fetched.last_seq or room.seqs.applied == before:
                    return
        except Exception as exc:  # the database is away: the next round tries again
            log.warning("catch-up failed", extra={"room": name, "error": str(exc)})
        finally:
            self._catching_up.pop(name, None)

    async def _anti_entropy_loop(self) -> None:
        while True:
            await asyncio.sleep(self._anti_entropy)
            rooms = self._rooms()
            if not rooms:
                continue
            try:
                stored = await self.store.last_seqs(list(rooms))
            except Exception as exc:
                log.warning("anti-entropy check failed", extra={"error": str(exc)})
                continue
            behind = [n for n, seq in stored.items() if n in rooms and seq > rooms[n].seqs.applied]
            if behind:
                log.info("rooms behind the log", extra={"rooms": len(behind)})
                self.catch_up_all(behind)

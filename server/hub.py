"""`Hub`: the websocket sync server. Rooms are URL paths; each connection joins one room.

The hub owns the listening socket, the store's committer, the coordinator and the loaded rooms.
It admits a connection (`crdtdoc.server.admission`) before loading its room, loads a room once,
before anyone's message is handled (joiners of a cold room all wait for the same load), unloads
rooms that stay empty, and shuts down gracefully: stop accepting, close every connection with
1001, write what is queued, close the database. Plain HTTP requests are answered by
`crdtdoc.server.endpoints`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from crdtdoc.artifacts.tasks import task_of_lease
from crdtdoc.errors import CrdtdocError, RemoteError, UsageError
from crdtdoc.server.admission import Admission, RoomUnavailable, authenticate, room_name
from crdtdoc.server.cluster import PRESENCE_TIMEOUT, Cluster
from crdtdoc.server.commit import GroupCommitter
from crdtdoc.server.config import HubConfig, ws_url
from crdtdoc.server.coordination import Coordinator
from crdtdoc.server.endpoints import answer_http
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.local_coordination import LocalCoordinator
from crdtdoc.server.metrics import HubMetrics
from crdtdoc.server.peer import Peer, close_reason
from crdtdoc.server.pgstore import PostgresCommitter, PostgresStore, redacted
from crdtdoc.server.presence import KeptStatus
from crdtdoc.server.reader import Reader, close_draining
from crdtdoc.server.room import Room
from crdtdoc.server.shared_coordination import SharedCoordinator
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from crdtdoc.server.web import harden

log = logging.getLogger("crdtdoc.hub")


class Hub:
    """Serves rooms over websockets until `close()`."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.rooms: dict[str, Room] = {}
        self.kept_statuses: dict[str, dict[int, KeptStatus]] = {}  # by room, outliving rooms
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._server: Server | None = None
        self._committer: GroupCommitter | None = None
        self._coordinator: Coordinator | None = None
        self.cluster: Cluster | None = None  # with PostgreSQL: the link to other hubs
        self._janitor: asyncio.Task[None] | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        self.connections = 0
        self._admission = Admission(self.config)
        config = self.config
        self._rates = RateLimits(
            config.updates_per_second,
            config.update_bytes_per_second,
            config.awareness_per_second,
            config.requests_per_second,
            config.structs_per_second,
        )
        self.started = time.time()
        self._closed = False
        self.metrics = HubMetrics(self._metric_state)
        self.reader = Reader(self._rates, self.metrics)

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            raise UsageError("the hub is not started")
        return self._committer

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            raise UsageError("the hub is not started")
        return self._coordinator

    async def _lease_expired(self, room_name: str, lease: str, agent: str) -> None:
        """A task claim's lease ran out: the task returns to open (the hub drops the claim)."""
        task = task_of_lease(lease)
        if task is None:
            return
        room = await self.room(room_name)
        room.drop_claim(task[0], task[1], agent)

    def _claim_abandoned(self, room_name: str, lease: str, agent: str) -> bool:
        """Whether `agent`'s task-claim lease has no claim record left in its room's list."""
        task = task_of_lease(lease)
        room = self.rooms.get(room_name)
        if task is None or room is None:
            return False
        return not room.has_claim(task[0], task[1], agent)

    @property
    def port(self) -> int:
        if self._server is None:
            raise UsageError("the hub is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return ws_url(self.config.host, self.port)

    @property
    def accepting(self) -> bool:
        """Whether the hub is started and not closing."""
        return self._server is not None and not self._closed

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        if config.shared:
            await self._start_shared()
        else:
            store = await loop.run_in_executor(
                None, lambda: SqliteStore(config.db, synchronous=config.synchronous)
            )
            self._committer = SqliteCommitter(store)
            self._watch_store(self._committer)
            self._committer.start()
            self._coordinator = LocalCoordinator(
                self._committer,
                on_expire=self._lease_expired,
                max_leases_per_agent=config.max_leases_per_agent,
                abandoned=self._claim_abandoned,
            )
        await self.coordinator.load()
        self._server = await serve(
            self._serve_connection,
            config.host,
            config.port,
            process_request=self._process_request,
            process_response=harden,  # CSP, nosniff, no-referrer on every HTTP answer
            max_size=config.max_message_bytes,
            open_timeout=config.handshake_timeout,
            compression=None,  # messages are encoded once for all peers; deflate would redo it
            # Unread messages per connection before TCP pushes back (about 2 MiB at the default
            # message size) while the hub waits out a sender's debt or its identity's turn.
            max_queue=1,
            server_header="crdtdoc",
        )
        self._janitor = loop.create_task(self._janitor_loop(), name="hub-janitor")
        self._lag_watch = loop.create_task(self.metrics.watch_event_loop(), name="hub-lag")
        log.info("hub listening", extra={"url": self.url, "db": redacted(config.db)})

    async def _start_shared(self) -> None:
        """PostgreSQL for the rooms and coordination, Redis (if given) between hubs."""
        config = self.config
        store = PostgresStore(config.db)
        await store.open()
        committer = PostgresCommitter(store)
        cluster = Cluster(
            config.redis,
            store,
            lambda: self.rooms,
            anti_entropy_seconds=config.anti_entropy_seconds,
            drop_rate=config.fanout_drop_rate,
        )
        committer.on_appended = self._appended
        self._watch_store(committer)
        committer.start()
        await cluster.start()
        self._committer, self.cluster = committer, cluster
        self._coordinator = SharedCoordinator(
            store,
            cluster,
            on_expire=self._lease_expired,
            poll_seconds=config.lease_poll_seconds,
            max_leases_per_agent=config.max_leases_per_agent,
            abandoned=self._claim_abandoned,
        )

    def _watch_store(self, committer: GroupCommitter) -> None:
        """Commit times go to the metrics; while the store cannot commit, every room's crdtdoc
        clients are told why (`/readyz` reads `committer.failure`)."""
        committer.on_committed = self.metrics.commit_seconds.observe
        committer.on_failed = self._store_failing
        committer.on_recovered = lambda: self._store_failing(None)

    def _store_failing(self, reason: str | None) -> None:
        for room in self.rooms.values():
            room.announcer.store_failing(reason)

    def _appended(self, name: str, seq: int, data: bytes) -> None:
        """An update of this hub's is in the shared log at `seq`: note it, tell the others."""
        room = self.rooms.get(name)
        if room is not None:
            room.seqs.add(seq)
        if self.cluster is not None:
            self.cluster.publish(name, seq, data)

    async def close(self) -> None:
        """Stops accepting, closes every connection (1001), writes what is queued. Closing
        twice does nothing more."""
        if self._closed:
            return
        self._closed = True
        self.reader.closing.set()  # connections waiting out a debt close themselves, draining
        if self._janitor is not None:
            self._janitor.cancel()
        if self._lag_watch is not None:
            self._lag_watch.cancel()
        if self._server is not None:
            self._server.close(code=1001, reason="hub shutting down")
            await self._server.wait_closed()
        if self._coordinator is not None:
            await self._coordinator.close()
        if self._committer is not None:
            await self._committer.close()
        if self.cluster is not None:
            await self.cluster.close()
        self.reader.close()
        log.info("hub stopped")

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP and websocket entry ----------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP is answered here (`crdtdoc.server.endpoints`); None: the handshake goes on."""
        return await answer_http(self, ws, request)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        self.connections += 1
        remote = "{}:{}".format(*ws.remote_address[:2]) if ws.remote_address else "?"
        ip = remote.rsplit(":", 1)[0]
        identity: str | None = None
        counted = False
        try:
            try:
                name = room_name(ws.request.path if ws.request else "")
                grant = authenticate(self.config.secret, ws.request, name)  # before loading
                identity = grant.agent if grant is not None else None
                self._admission.admit(identity, ip)
                counted = True
                room = await self.room(name)
            except (RemoteError, RoomUnavailable) as exc:
                self.metrics.refusals.labels(type(exc).__name__).inc()
                log.info("connection refused", extra={"peer": remote, "reason": str(exc)})
                await close_draining(ws, exc.close_code, close_reason(str(exc)))
                return
            peer = Peer(ws, self.config, remote)
            peer.grant, peer.identity = grant, identity
            peer.on_sent = self._count_sent
            peer.before_resync = lambda: self.reader.pay(ws, peer)
            writer = asyncio.get_running_loop().create_task(peer.run_writer())
            room.join(peer)
            log.info("peer joined", extra={"room": name, "peer": remote})
            try:
                await self.reader.read(ws, room, peer)
            finally:
                room.leave(peer)
                if peer.identity is None:
                    self._rates.forget(peer.rate_key)
                writer.cancel()
                log.info("peer left", extra={"room": name, "peer": remote})
        finally:
            self.connections -= 1
            if counted:
                self._admission.leave(identity, ip)

    # -- metrics ---------------------------------------------------------------------------

    def _count_sent(self, messages: int, size: int) -> None:
        self.metrics.messages_out.inc(messages)
        self.metrics.bytes_out.inc(size)

    def _metric_state(self) -> dict[str, float]:
        """The hub's state now, for the gauges of `/metrics`."""
        queues = [peer.queued for room in self.rooms.values() for peer in room.peers]
        committer = self._committer
        return {
            "connections": self.connections,
            "rooms_loaded": len(self.rooms),
            "peers": len(queues),
            "send_queue_messages": sum(m for m, _ in queues),
            "send_queue_bytes": sum(b for _, b in queues),
            "send_queue_messages_max": max((m for m, _ in queues), default=0),
            "event_loop_lag_max_seconds": self.metrics.loop_lag_max,
            "store_failing": float(committer is not None and committer.failure is not None),
            "store_failed_commits": committer.failed_commits if committer is not None else 0,
        }

    # -- rooms -----------------------------------------------------------------------------

    async def room(self, name: str) -> Room:
        """The loaded room `name`; joiners of a cold room all await one load."""
        room = self.rooms.get(name)
        if room is not None:
            return room
        task = self._loading.get(name)
        if task is None:
            if len(self.rooms) + len(self._loading) >= self.config.max_rooms:
                self._unload(force=True)
                if len(self.rooms) + len(self._loading) >= self.config.max_rooms:
                    raise RoomUnavailable(
                        f"the hub holds at most {self.config.max_rooms} rooms in memory and all "
                        "are in use; retry later",
                        1013,
                    )
            task = asyncio.get_running_loop().create_task(self._load(name))
            self._loading[name] = task
        return await asyncio.shield(task)

    async def _load(self, name: str) -> Room:
        if self.cluster is not None:
            self.cluster.watch(name)  # before reading: nothing committed meanwhile is missed
        try:
            stored = await self.committer.load(name)
            room = Room(
                name,
                self.committer,
                self.config,
                self.coordinator,
                self._rates,
                self.cluster,
                kept=self.kept_statuses.setdefault(name, {}),
            )
            room.metrics = self.metrics
            room.restore(stored)
        except CrdtdocError as exc:
            log.error("cannot load room", extra={"room": name, "error": str(exc)})
            if self.cluster is not None:
                self.cluster.unwatch(name)
            raise RoomUnavailable(f"room {name!r} cannot be loaded: {exc}", 1011) from None
        finally:
            self._loading.pop(name, None)
        self.rooms[name] = room
        if self.cluster is not None:
            self.cluster.catch_up(name)
        log.info("room loaded", extra={"room": name, "updates": len(stored.updates)})
        return room

    def _unload(self, force: bool = False) -> None:
        """Drops rooms with no peers whose writes are all durable (idle long enough, or any
        such room when `force`)."""
        now = time.monotonic()
        for name, room in list(self.rooms.items()):
            if room.peers or not room.fully_durable:
                continue
            if force or now - room.last_active >= self.config.room_idle_seconds:
                del self.rooms[name]
                room.unload()
        wall = time.time()
        for name, kept in list(self.kept_statuses.items()):  # unloaded rooms' ended statuses
            if name in self.rooms:
                continue  # a loaded room ends its own
            for client in [c for c, status in kept.items() if status.until <= wall]:
                del kept[client]
            if not kept:
                del self.kept_statuses[name]
                if self.cluster is not None:
                    self.cluster.unwatch(name)
                log.info("room unloaded", extra={"room": name})

    def _check_peers(self) -> None:
        """Disconnects peers that stopped reading or stayed silent past the idle timeout; drops
        presence that other hubs stopped renewing."""
        now = time.monotonic()
        idle = self.config.idle_timeout
        for room in self.rooms.values():
            if self.cluster is not None:
                room.expire_remote_presence(now, PRESENCE_TIMEOUT)
            for peer in list(room.peers):
                if peer.check_stuck(now):
                    continue
                if idle and now - peer.last_received > idle:
                    peer.close_soon(1000, f"idle for {idle:g} s; reconnect when there is work")

    async def _janitor_loop(self) -> None:
        """Once in a while: drop stuck and idle peers, unload idle rooms."""
        period = min(1.0, self.config.room_idle_seconds / 2, self.config.send_timeout / 2)
        while True:
            await asyncio.sleep(period)
            try:
                self._check_peers()
                self._unload()
            except Exception:  # never let housekeeping take the hub down
                log.exception("janitor failed")

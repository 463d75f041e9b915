"""`HubConfig`: every limit and timing of the hub as one named setting with a documented default.

Each field is also a `crdtdoc serve` flag (see `crdtdoc serve --help` and docs/HUB.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from crdtdoc.protocol.extension import DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class HubConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    db: str = "crdtdoc.db"
    """Where rooms are stored: a SQLite file (created if missing) for one hub process, or a
    `postgresql://` URL for any number of hubs sharing the rooms (see docs/SCALING.md)."""
    redis: str | None = None
    """`redis://` URL through which hubs on one PostgreSQL database pass updates to each other
    at once; without it they still converge, through the database, every `anti_entropy_seconds`."""
    anti_entropy_seconds: float = 1.0
    """With PostgreSQL: how often a hub compares its rooms with the database and reads what it
    missed (a Redis message lost, a hub that was down)."""
    lease_poll_seconds: float = 0.25
    """With PostgreSQL: how often waits for a lease re-read the queue (a Redis message usually
    wakes them first), and how often expired leases are swept."""
    fanout_drop_rate: float = 0.0
    """Fault injection for tests: the share of Redis messages this hub ignores on arrival."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest websocket message accepted; a bigger one closes the connection (1009)."""
    max_connections: int = 1000
    """Open websocket connections; more are refused with HTTP 503 until some close."""
    max_rooms: int = 1000
    """Rooms held in memory; idle ones are unloaded first, then new rooms are refused (1013)."""
    max_awareness_bytes: int = 64 * 1024
    """Largest single awareness (presence) state a client may publish."""
    handshake_timeout: float = 10.0
    """Seconds a client has to complete the websocket opening handshake."""
    idle_timeout: float = 300.0
    """Seconds a connection may stay silent (no message) before it is closed; 0 disables.
    crdtdoc clients and y-websocket providers send presence every 15 s, so they never idle out."""
    room_idle_seconds: float = 30.0
    """Seconds a room with no connections stays in memory before it is unloaded."""
    send_queue_messages: int = 1024
    """Messages queued for one slow peer before the hub drops its queue and resyncs it."""
    send_queue_bytes: int = 8 * 1024 * 1024
    """Bytes queued for one slow peer before the hub drops its queue and resyncs it."""
    send_timeout: float = 30.0
    """Seconds one send to a peer may block (the peer is not reading) before it is disconnected."""
    history: bool = True
    """Keep what was deleted in every room (snapshots included), so agents can read any past
    version, blame and revert (`Replica.at`, `history`). Costs the bytes of deleted content:
    1.6x for an agent revising paragraphs, 3.1x on the keystroke editing trace (benchmarks history).
    `--no-history` collects deleted content as Yjs does."""
    history_horizon: float | None = None
    """With history: seconds the past stays readable. Compaction collects what was deleted
    before a mark (the room's version, noted at compactions) older than this, and provenance rows
    older than this; None keeps everything."""
    compact_log_updates: int = 1000
    """Logged updates in a room before they are compacted into a snapshot, in the background."""
    compact_log_bytes: int = 4 * 1024 * 1024
    """Logged bytes in a room before they are compacted into a snapshot."""
    secret: bytes | None = None
    """HMAC secret for access tokens (`--secret-file` or $CRDTDOC_SECRET). Without one the hub
    lets anyone in, which it accepts only on a loopback address unless `insecure`."""
    insecure: bool = False
    """Allow a non-loopback address without a secret (anyone who can connect can write)."""
    max_connections_per_identity: int = 32
    """Open connections one agent (one token identity) may hold; more are refused (4429)."""
    max_connections_per_ip: int = 256
    """Open connections from one address; more are refused (4429)."""
    updates_per_second: float = 500.0
    """Average updates per second one identity may send (bursts of twice that); past it, 4429."""
    update_bytes_per_second: float = 8 * 1024 * 1024
    """Average update bytes per second one identity may send (bursts of twice that)."""
    awareness_per_second: float = 20.0
    """Average presence updates per second one identity may send (bursts of twice that)."""
    structs_per_second: float = 20_000.0
    """Average structs (the units an update is made of: judging and applying each costs about
    10 µs) one identity may send per second, bursts of twice that; past it the hub reads that
    identity's next messages later (never refuses them), so its work cannot crowd out others'."""
    max_leases_per_agent: int = 1000
    """Leases one agent may hold or wait for at once, over all rooms; past it, `acquire` is
    answered `limit` (each lease costs memory and a timer until it expires)."""
    requests_per_second: float = 50.0
    """Average coordination requests (leases, numbers, guarded commits) per second one identity
    may send (bursts of twice that); past it, the request is answered `rate_limited`."""
    max_waiting_updates: int = 1000
    """Updates of one identity (one connection without tokens) that may wait, over all rooms'
    causal buffers, for data nobody has sent yet; past it, more are not buffered and the sender
    is asked to sync again (sync step 1)."""
    max_waiting_bytes: int = 4 * 1024 * 1024
    """Memory (bytes and their parse) one identity's waiting updates may take, over all rooms."""
    max_waiting_structs: int = 4_000
    """Structs one identity may have waiting, over all rooms: when what they wait for arrives
    they are all applied at once, so this bounds how long that takes (about 10 µs a struct)."""
    max_waiting_seconds: float = 30.0
    """Seconds an update may wait for what it builds on; then it is dropped and its sender is
    asked to sync again (a dependency that never arrives must not hold memory for ever)."""
    max_room_bytes: int = 256 * 1024 * 1024
    """Largest stored size of a room (snapshot plus log); an update past it is refused (4413)."""
    synchronous: str = "full"
    """SQLite `synchronous` setting: "full" survives power loss, "normal" survives a process
    crash (SIGKILL) but may lose the last commits on power loss."""

    @property
    def shared(self) -> bool:
        """Whether rooms live in PostgreSQL, shared with other hubs."""
        return self.db.startswith(("postgresql://", "postgres://"))

    def __post_init__(self) -> None:
        if "://" in self.db and not self.shared:
            scheme = self.db.split("://", 1)[0]
            raise ValueError(
                f"the store is a SQLite file or a postgresql:// URL, not a {scheme}:// URL"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be from 0 to 65535 (0: any free port)")
        if self.redis is not None and not self.shared:
            raise ValueError("--redis connects hubs that share a PostgreSQL --store")
        if not 0.0 <= self.fanout_drop_rate <= 1.0:
            raise ValueError("fanout_drop_rate must be between 0 and 1")
        if self.synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        for name in (
            "max_message_bytes",
            "max_connections",
            "max_rooms",
            "max_awareness_bytes",
            "send_queue_messages",
            "send_queue_bytes",
            "compact_log_updates",
            "compact_log_bytes",
            "max_connections_per_identity",
            "max_connections_per_ip",
            "max_room_bytes",
            "max_leases_per_agent",
            "max_waiting_updates",
            "max_waiting_bytes",
            "max_waiting_structs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "handshake_timeout",
            "room_idle_seconds",
            "send_timeout",
            "updates_per_second",
            "update_bytes_per_second",
            "awareness_per_second",
            "requests_per_second",
            "structs_per_second",
            "anti_entropy_seconds",
            "lease_poll_seconds",
            "max_waiting_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must be 0 (off) or positive")
        if self.history_horizon is not None:
            if not self.history_horizon >= 1.0:
                raise ValueError("history_horizon must be at least 1 second (None: keep all)")
            if not self.history:
                raise ValueError("a history horizon needs history (drop --no-history)")


def ws_url(host: str, port: int) -> str:
    """The URL clients dial for a hub listening on `host`:`port` (an IPv6 address bracketed)."""
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"

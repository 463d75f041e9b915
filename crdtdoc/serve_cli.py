"""`crdtdoc serve`: the hub's command, with every setting of `HubConfig` as an option (defaults
shown in `--help`), a refusal to listen beyond loopback without a secret, and the hub's structured
logs. The hub itself loads only when the command runs."""

from __future__ import annotations

import argparse

from crdtdoc.errors import UsageError
from crdtdoc.tokens import SECRET_ENV, load_secret, parse_duration


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from crdtdoc.server.config import HubConfig
    from crdtdoc.server.logs import configure
    from crdtdoc.server.serve import serve

    configure(args.log_level)
    fields = {f: getattr(args, f) for f in HubConfig.__dataclass_fields__ if hasattr(args, f)}
    fields["secret"] = load_secret(args.secret_file)
    try:
        config = HubConfig(**fields)
    except ValueError as exc:
        raise UsageError(f"bad setting: {exc}") from None
    if config.secret is None and not config.insecure and not _is_loopback(config.host):
        raise UsageError(
            f"refusing to listen on {config.host} without a secret: anyone who can reach it "
            f"could read and write every room. Pass --secret-file (or set {SECRET_ENV}), or "
            "--insecure if that is really what you want"
        )
    asyncio.run(serve(config))
    return 0


def duration(text: str) -> float:
    """An argparse type: seconds in "90", "90s", "15m", "12h" or "7d"."""
    try:
        return parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from crdtdoc.server.config import HubConfig

    d = HubConfig()
    serve = commands.add_parser(
        "serve",
        help="run the sync hub (websockets + SQLite, or PostgreSQL + Redis for several hubs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run the crdtdoc sync hub. Clients join rooms at ws://HOST:PORT/<room> and "
        "speak y-protocols (stock Yjs y-websocket providers work unchanged). Every update is "
        "validated, stored durably (SQLite, or PostgreSQL shared by several hubs) before it is "
        "acknowledged, and relayed to the room. Prints 'crdtdoc hub listening on ws://HOST:PORT' "
        "once it accepts connections; SIGTERM "
        "or SIGINT shut it down gracefully. GET /healthz answers on the same port.",
    )
    add = serve.add_argument
    add("--host", default=d.host, help="address to listen on")
    add("--port", type=int, default=d.port, help="port to listen on (0: any free port)")
    add(
        "--store",
        "--db",
        dest="db",
        metavar="STORE",
        default=d.db,
        help="where rooms are stored: a SQLite file for one hub, or a postgresql://USER@HOST/DB "
        "URL shared by any number of hubs (see docs/SCALING.md)",
    )
    add(
        "--redis",
        default=None,
        help="redis://HOST:PORT URL through which hubs on one PostgreSQL store relay updates to "
        "each other at once (without it they converge through the database, more slowly)",
    )
    add(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (JSON lines on stderr)",
    )
    limits = serve.add_argument_group("limits")
    add = limits.add_argument
    add(
        "--max-message-bytes",
        type=int,
        default=d.max_message_bytes,
        help="largest websocket message accepted (bigger ones close the connection, 1009)",
    )
    add(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open connections; more are refused with HTTP 503",
    )
    add(
        "--max-rooms",
        type=int,
        default=d.max_rooms,
        help="rooms held in memory at once; idle ones are unloaded first, then new rooms are "
        "refused (1013)",
    )
    add(
        "--max-awareness-bytes",
        type=int,
        default=d.max_awareness_bytes,
        help="largest presence (awareness) state one client may publish; past it, 1002",
    )
    add(
        "--handshake-timeout",
        type=float,
        default=d.handshake_timeout,
        help="seconds to complete the websocket handshake",
    )
    add(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout,
        help="seconds a connection may stay silent before it is closed (0: never)",
    )
    add(
        "--room-idle-seconds",
        type=float,
        default=d.room_idle_seconds,
        help="seconds an empty room stays in memory before it is unloaded",
    )
    add(
        "--send-queue-messages",
        type=int,
        default=d.send_queue_messages,
        help="messages queued for a slow peer before it is resynced",
    )
    add(
        "--send-queue-bytes",
        type=int,
        default=d.send_queue_bytes,
        help="bytes queued for a slow peer before it is resynced",
    )
    add(
        "--send-timeout",
        type=float,
        default=d.send_timeout,
        help="seconds a send may block on a peer that does not read before it is disconnected",
    )
    add(
        "--no-history",
        dest="history",
        action="store_false",
        help="collect deleted content as Yjs does: smaller rooms, but no past versions, blame "
        "or revert of deleted text (history kept unless given: %(default)s)",
    )
    add(
        "--history-horizon",
        type=duration,
        default=d.history_horizon,
        metavar="DURATION",
        help="keep the past readable for this long (seconds, or with a unit: 90m, 12h, 30d), "
        "then collect what was deleted before it, at compaction (default: keep everything)",
    )
    add(
        "--compact-log-updates",
        type=int,
        default=d.compact_log_updates,
        help="logged updates per room before they are compacted into a snapshot",
    )
    add(
        "--compact-log-bytes",
        type=int,
        default=d.compact_log_bytes,
        help="logged bytes per room before they are compacted into a snapshot",
    )
    add(
        "--synchronous",
        default=d.synchronous,
        choices=["full", "normal"],
        help="SQLite durability: full survives power loss, normal survives a process crash",
    )
    add(
        "--max-connections-per-identity",
        type=int,
        default=d.max_connections_per_identity,
        help="open connections one token identity may hold",
    )
    add(
        "--max-connections-per-ip",
        type=int,
        default=d.max_connections_per_ip,
        help="open connections from one address",
    )
    add(
        "--updates-per-second",
        type=float,
        default=d.updates_per_second,
        help="average updates per second per identity (bursts of twice that); past it: 4429",
    )
    add(
        "--update-bytes-per-second",
        type=float,
        default=d.update_bytes_per_second,
        help="average update bytes per second per identity (bursts of twice that); past it, "
        "4429 (a crdtdoc client pauses and resends, nothing lost)",
    )
    add(
        "--awareness-per-second",
        type=float,
        default=d.awareness_per_second,
        help="average presence updates per second per identity (bursts of twice that; more "
        "are coalesced, never a close)",
    )
    add(
        "--structs-per-second",
        type=float,
        default=d.structs_per_second,
        help="average structs per second per identity (bursts of twice that); past it the "
        "hub reads that identity's messages later",
    )
    add(
        "--max-leases-per-agent",
        type=int,
        default=d.max_leases_per_agent,
        help="leases one agent may hold or wait for at once, over all rooms; past it acquire "
        "is answered 'limit'",
    )
    add(
        "--requests-per-second",
        type=float,
        default=d.requests_per_second,
        help="average coordination requests per second per identity (bursts of twice that); "
        "past it the request is answered rate_limited",
    )
    add(
        "--max-waiting-updates",
        type=int,
        default=d.max_waiting_updates,
        help="updates per identity that may wait (over all rooms) for data they build on; "
        "past it the sender is asked to sync again",
    )
    add(
        "--max-waiting-bytes",
        type=int,
        default=d.max_waiting_bytes,
        help="memory per identity those waiting updates may take (over all rooms)",
    )
    add(
        "--max-waiting-structs",
        type=int,
        default=d.max_waiting_structs,
        help="structs per identity that may wait, over all rooms (all are applied at once "
        "when what they wait for arrives)",
    )
    add(
        "--max-waiting-seconds",
        type=float,
        default=d.max_waiting_seconds,
        help="how long an update may wait for what it builds on before it is dropped and its "
        "sender asked to sync again",
    )
    add(
        "--max-room-bytes",
        type=int,
        default=d.max_room_bytes,
        help="largest stored size of a room; updates past it are refused (4413)",
    )
    cluster = serve.add_argument_group("several hubs (PostgreSQL)")
    cluster.add_argument(
        "--anti-entropy-seconds",
        type=float,
        default=d.anti_entropy_seconds,
        help="how often a hub checks the database for updates it missed (lost Redis messages)",
    )
    cluster.add_argument(
        "--lease-poll-seconds",
        type=float,
        default=d.lease_poll_seconds,
        help="how often lease waits re-read the queue, and expired leases are swept",
    )
    cluster.add_argument(
        "--fanout-drop-rate", type=float, default=0.0, help=argparse.SUPPRESS
    )  # fault injection for tests
    security = serve.add_argument_group("security")
    security.add_argument(
        "--secret-file",
        default=None,
        help=f"file holding the token secret (else ${SECRET_ENV}); with a "
        "secret every connection needs a token",
    )
    security.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback --host without a secret"
    )
    serve.set_defaults(run=_serve)

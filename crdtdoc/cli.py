"""The `crdtdoc` command line.

`crdtdoc serve` runs the sync hub; `crdtdoc inspect FILE` shows what a Yjs update carries (or why
it is invalid); `crdtdoc version decode TOKEN` shows what a version token names.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, cast

import crdtdoc
from crdtdoc.errors import CrdtdocError, HubStorageError, UsageError
from crdtdoc.tokens import SECRET_ENV, create_token, load_secret, parse_duration
from crdtdoc.updates import CONTENT_NAMES, parse_update
from crdtdoc.versions import Version


def _inspect(args: argparse.Namespace) -> int:
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as f:
            data = f.read()
    parsed = parse_update(data, details=args.items)
    report: dict[str, object] = {
        "bytes": parsed.size,
        "clients": {
            str(c): {"start": s.start, "end": s.end, "skips": s.skips, "gc": s.gcs}
            for c, s in sorted(parsed.structs.items())
        },
        "references": {str(c): k for c, k in sorted(parsed.references.items())},
        "deletes": {
            str(c): parsed.delete_set.client_ranges(c) for c in parsed.delete_set.clients()
        },
    }
    if parsed.items is not None:
        report["items"] = [
            {
                "id": [i.client, i.clock],
                "length": i.length,
                "content": CONTENT_NAMES.get(i.content, i.content),
                "parent": i.parent,
                "key": i.parent_sub,
                "value": i.value if isinstance(i.value, (str, int, float)) else repr(i.value),
            }
            for i in parsed.items
        ]
    print(json.dumps(report, indent=2))
    return 0


def _version_decode(args: argparse.Namespace) -> int:
    version = Version.from_token(args.token)
    report = {
        "clocks": {str(c): k for c, k in sorted(version.clocks.items())},
        "deleted": {str(c): version.deleted.client_ranges(c) for c in version.deleted.clients()},
    }
    print(json.dumps(report, indent=2))
    return 0


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


BENCHMARKS = (
    "strategies",
    "partitions",
    "hub_load",
    "trace",
    "cluster_load",
    "validation_overhead",
    "instructions",
    "gate_cost",
    "abuse",
    "report",
)


def _bench(args: argparse.Namespace) -> int:
    """Runs a benchmark from the source checkout this crdtdoc was installed from."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise UsageError(
            "the benchmarks live in crdtdoc's source checkout (benchmarks/): clone the "
            "repository and `pip install -e '.[bench]'` there"
        )
    # A child process in the checkout: the installed package never imports the benchmarks.
    command = [sys.executable, "-m", "benchmarks", args.name, *args.options]
    return subprocess.run(command, cwd=root, check=False).returncode


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from crdtdoc.demo import run_demo

    result = asyncio.run(run_demo())
    return 0 if all(s.crdtdoc_ok for s in result.scenes) else 1


def _mcp(args: argparse.Namespace) -> int:
    import asyncio

    from crdtdoc.mcp_server import serve_mcp

    asyncio.run(serve_mcp(args.hub, args.room, args.agent, args.token, args.write_timeout))
    return 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token_create(args: argparse.Namespace) -> int:
    secret = load_secret(args.secret_file)
    if secret is None:
        raise UsageError(f"no secret: pass --secret-file or set {SECRET_ENV}")
    artifacts = [a for a in args.artifacts.split(",") if a] if args.artifacts else None
    ttl = parse_duration(args.ttl) if args.ttl else None
    print(
        create_token(
            secret, args.agent, args.rooms, read_only=args.read_only, artifacts=artifacts, ttl=ttl
        )
    )
    return 0


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one JSON object on stdout too when the
    command line asks for `--json` (a program reading stdout learns why, and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": "UsageError", "message": message, "exit": 2}))
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="crdtdoc",
        description="Shared artifacts for many agents: Yjs-compatible CRDT replicas and tools.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"crdtdoc {crdtdoc.__version__}; {crdtdoc.hotpath.describe()}",
    )
    commands = cast(  # every sub-parser is a Parser too (JSON usage errors)
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND"),
    )
    _add_serve(commands)

    inspect = commands.add_parser(
        "inspect",
        help="show what a Yjs v1 update carries, or why it is invalid",
        description="Parse and validate a Yjs v1 update (a file, or - for stdin) and print its "
        "per-client clock ranges, referenced ids and delete set as JSON. Exit 1 if invalid.",
    )
    inspect.add_argument("file", help="update file, or - to read standard input")
    inspect.add_argument("--items", action="store_true", help="also list every struct")
    inspect.set_defaults(run=_inspect)

    token = commands.add_parser("token", help="create access tokens for agents")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="print a signed token",
        description="Print a token (HMAC-SHA256 with the hub's secret) that lets AGENT join "
        "rooms matching PATTERN. Clients pass it as ?token=... or Authorization: Bearer.",
    )
    create.add_argument("--agent", required=True, help="the agent's name, as the hub records it")
    create.add_argument("--rooms", default="*", help="glob of rooms it may join (default: *)")
    create.add_argument("--read-only", action="store_true", help="may sync and read, not write")
    create.add_argument(
        "--artifacts", default=None, help="comma-separated artifacts it may change (default: all)"
    )
    create.add_argument("--ttl", default=None, help="lifetime such as 90s, 15m, 12h, 7d")
    create.add_argument(
        "--secret-file", default=None, help=f"the hub's secret (else ${SECRET_ENV})"
    )
    create.set_defaults(run=_token_create)

    bench = commands.add_parser(
        "bench",
        help="run a benchmark (from a source checkout)",
        description="Run one of crdtdoc's benchmarks; results go to benchmarks/results/ and "
        "benchmarks/RESULTS.md. Same as `python -m benchmarks NAME`. Options after NAME go to "
        "the benchmark (NAME --help lists them).",
    )
    bench.add_argument("name", choices=BENCHMARKS, help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(run=_bench)

    from crdtdoc import artifact_cli, room_cli
    from crdtdoc.agent_cli import add_connection_options, add_version_options

    artifact_cli.add_commands(commands)
    room_cli.add_commands(commands)
    demo = commands.add_parser(
        "demo",
        help="see the failures crdtdoc prevents (well under a minute)",
        description="Four scripted scenes (lost design section, duplicate migration number, lost "
        "interface method, a task worked twice) on a naive shared store, then the same agents "
        "on crdtdoc through an embedded hub on a temporary SQLite file.",
    )
    demo.set_defaults(run=_demo)
    mcp = commands.add_parser(
        "mcp",
        help="run an MCP server (stdio) for one agent in one room",
        description="Serve the Model Context Protocol on stdin/stdout: an MCP-capable agent reads "
        "and writes the room's documents, tasks and specs as itself through one connected "
        "replica. Settings also from CRDTDOC_HUB, CRDTDOC_ROOM, CRDTDOC_AGENT, CRDTDOC_TOKEN.",
    )
    add_connection_options(mcp, output=False)
    mcp.add_argument(
        "--write-timeout",
        type=float,
        default=30.0,
        help="seconds a write waits for the hub to confirm it stored it; after that the tool "
        "answers that the change is kept and will be sent (default 30)",
    )
    mcp.set_defaults(run=_mcp)
    version = commands.add_parser(
        "version",
        help="the room's version token, or decode one (version decode TOKEN)",
        description="Without an action: connect and print the room's current version token. "
        "`version decode TOKEN` shows what a token names.",
    )
    add_version_options(version)
    version_commands = version.add_subparsers(dest="version_command", metavar="ACTION")
    decode = version_commands.add_parser(
        "decode",
        help="show the clocks and deletions a version token names",
        description="Decode a version token (from Version.token()) and print it as JSON.",
    )
    decode.add_argument("token")
    decode.set_defaults(run=_version_decode)
    return parser


def describe(exc: CrdtdocError) -> str:
    """An error's message as a command should print it (the process ends: nothing is kept
    in it, unlike in a library replica)."""
    if isinstance(exc, HubStorageError):
        return (
            f"the hub cannot store updates: {exc.reason}; the hub holds this change and stores "
            "it once it can (its /readyz says when)"
        )
    return str(exc)


def _json_of(value: object) -> object:
    """A value an error carries, as JSON: a change as its description, a spec value as its
    fields, plain values as they are (never a Python repr)."""
    describe_ = getattr(value, "describe", None)
    if callable(describe_):
        return describe_()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json_of(v) for k, v in dataclasses.asdict(value).items()}
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        result: int = run(args)
        return result
    except CrdtdocError as exc:
        from crdtdoc.agent_cli import exit_code

        code = exit_code(exc)
        if getattr(args, "json", False):
            error: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
            for name in ("holder", "claimants", "values", "member", "changes"):
                value = getattr(exc, name, None)
                if value is not None:
                    error[name] = (
                        [_json_of(v) for v in value]
                        if isinstance(value, list)
                        else (_json_of(value))
                    )
            error["exit"] = code
            print(json.dumps(error, ensure_ascii=False, default=str))
        print(f"crdtdoc: {type(exc).__name__}: {describe(exc)}", file=sys.stderr)
        return code
    except BrokenPipeError:  # the reader went away (`| head -1`): nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"crdtdoc: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crdtdoc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

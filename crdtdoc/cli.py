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
from crdtdoc import serve_cli
from crdtdoc.contents import CONTENT_NAMES
from crdtdoc.errors import CrdtdocError, HubStorageError, UsageError
from crdtdoc.tokens import SECRET_ENV, create_token, load_secret, parse_duration
from crdtdoc.updates import parse_update
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
    serve_cli.add_commands(commands)

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

    from crdtdoc import artifact_cli, history_cli, room_cli
    from crdtdoc.agent_cli import add_connection_options, add_version_options

    artifact_cli.add_commands(commands)
    history_cli.add_commands(commands)
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
        said = f"{exc.strerror or exc}{where}"
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": said, "exit": 1}))
        print(f"crdtdoc: {said}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crdtdoc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

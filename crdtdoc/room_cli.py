"""`crdtdoc changes|watch|number|lease|status|peers|artifacts`: what happens in a room, and
the hub's coordination (unique numbers, leases with fencing tokens, kept statuses) from the shell.

A lease taken here belongs to the agent, not to the process: any later command of the same agent
may renew or release it with its fencing token, and `--fence LEASE:TOKEN` on a write makes the hub
refuse that write once the token is no longer current. Nothing renews it between commands: it
lasts `--ttl` seconds unless renewed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from crdtdoc.agent_cli import (
    Commands,
    command_parsers,
    connected_replica,
    fencing_token,
    lease_name,
    print_result,
    seconds_between,
    simple_commands,
)
from crdtdoc.errors import SyncTimeout, UsageError
from crdtdoc.versions import Version


def _changes(args: argparse.Namespace) -> int:
    if args.since is None and args.wait is None:
        raise UsageError("pass --since TOKEN (crdtdoc version prints one), or --wait SECONDS")
    with connected_replica(args) as r:
        since = Version.from_token(args.since) if args.since else r.version()
        if args.wait is not None:  # block until others change something (or the time is up)
            with contextlib.suppress(SyncTimeout):  # others: other agents, not this agent's
                r._wait_until(  # other commands (each may write under another client id)
                    lambda: any(
                        c.agent != r.agent for c in r.changes_by_others(since, (), r.client_id)
                    ),
                    args.wait,
                    "nothing changed",
                )
        changes = r.changes_since(since)
        result = {
            "changes": [
                {"agent": c.agent, "kind": c.kind, "artifact": c.artifact, "text": c.describe()}
                for c in changes
            ],
            "lines": [c.describe() for c in changes] or ["no changes"],
        }
        print_result(args, r, result)
    return 0


def _watch(args: argparse.Namespace) -> int:
    """Prints changes as they arrive (first those since `--since`), until interrupted or `--for`
    seconds pass."""
    with connected_replica(args) as r:
        emit: Callable[[dict[str, Any]], None] = (
            (lambda c: print(json.dumps(c, ensure_ascii=False), flush=True))
            if args.json
            else (lambda c: print(c["text"], flush=True))
        )
        # From the change feed rather than per commit: a deletion and its record in the
        # deletions log (who deleted) arrive as two commits, and only the feed joins them.
        mark = Version.from_token(args.since) if args.since else r.version()
        stop = time.monotonic() + args.seconds if args.seconds else None
        while stop is None or time.monotonic() < stop:  # Ctrl-C: exit 130, as documented
            r.poll()
            now = r.version()
            if now != mark:
                token = now.token()
                for c in r.changes_since(mark):
                    emit(
                        {
                            "agent": c.agent,
                            "kind": c.kind,
                            "artifact": c.artifact,
                            "text": c.describe(),
                            "version": token,
                        }
                    )
                if not args.json:  # where to resume from: `watch --since` it
                    print(f"version {token}", file=sys.stderr, flush=True)
                mark = now
            time.sleep(0.1)
    return 0


def _number(args: argparse.Namespace) -> int:
    """The next number of a sequence, decided and recorded by the hub: never handed out twice."""
    with connected_replica(args) as r:
        value = int(r.request("next", {"sequence": args.sequence})["value"])
        print_result(args, r, {"sequence": args.sequence, "value": value, "lines": [str(value)]})
    return 0


def _artifacts(args: argparse.Namespace) -> int:
    with connected_replica(args) as r:
        kinds = r.artifacts()
        lines = [f"{kind:<9} {name}" for name, kind in sorted(kinds.items())]
        print_result(args, r, {"artifacts": kinds, "lines": lines or ["no artifacts yet"]})
    return 0


def _peers(args: argparse.Namespace) -> int:
    with connected_replica(args) as r:
        deadline = time.monotonic() + min(args.timeout, 1.0)  # presence arrives just after sync
        while time.monotonic() < deadline and not r.peers():
            time.sleep(0.05)
            r.poll()
        present = r.peers()
        peers = [
            {"agent": p.agent, "status": p.status, "task": p.task, "until": p.until}
            for p in present
        ]
        lines = [
            f"{p.agent}  {p.status or '-'}  {p.task or '-'}"
            + (f"  (until {_clock(p.until)})" if p.until else "")
            for p in present
        ]
        print_result(args, r, {"peers": peers, "lines": lines or ["nobody else is here"]})
    return 0


def _status(args: argparse.Namespace) -> int:
    """Shows the agent with a status (and task) for `--for` seconds after the command ends: the
    hub keeps it, as an agent that runs one command at a time is never connected for long."""
    if args.clear == (args.status is not None):
        raise UsageError("pass a STATUS to show, or --clear (not both)")
    with connected_replica(args) as r:
        request = {"status": args.status, "task": args.task, "ttl": args.seconds}
        ttl = float(r.request("status", request)["ttl"])
        shown: dict[str, Any]
        if args.status is None:
            shown = {"status": None, "lines": ["status cleared"]}
        else:
            until = time.time() + ttl
            line = f"{r.agent}: {args.status}" + (f" on {args.task}" if args.task else "")
            shown = {
                "status": args.status,
                "task": args.task,
                "until": until,
                "lines": [f"{line} (until {_clock(until)})"],
            }
        print_result(args, r, shown)
    return 0


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix))


def _lease(args: argparse.Namespace) -> int:
    with connected_replica(args) as r:
        action = args.action
        if action == "list":
            leases = r.request("leases", {}).get("leases", [])
            lines = [
                f"{entry['name']}  held by {entry['holder']}"
                + (f"  token {entry['token']}" if entry.get("token") is not None else "")
                + f"  {entry['expires_in']:.0f} s left"
                + (f"  waiting: {', '.join(entry['waiting'])}" if entry.get("waiting") else "")
                for entry in leases
            ]
            print_result(args, r, {"leases": leases, "lines": lines or ["no leases held"]})
            return 0
        name = args.lease
        if action == "release":
            r.request("release", {"name": name, "token": args.token_value})
            print_result(args, r, {"lease": name, "released": True, "lines": [f"released {name}"]})
            return 0
        if action == "acquire":
            wait = args.wait
            request = {"name": name, "ttl": args.ttl, "wait": wait}
            result = r.request("acquire", request, timeout=wait + args.timeout)
        else:  # renew
            request = {"name": name, "token": args.token_value, "ttl": args.ttl}
            result = r.request("renew", request)
        token = int(result["token"])
        shown = {"lease": name, "token": token, "ttl": float(result["ttl"]), "lines": [str(token)]}
        print_result(args, r, shown)
    return 0


def add_commands(commands: Commands) -> None:
    group, action = command_parsers(commands)
    command = simple_commands(commands)

    s = command(
        "changes",
        "what changed since a version token, agent by agent",
        "What changed since a version token, agent by agent.",
        _changes,
    )
    s.add_argument(
        "--since", help="a version token (crdtdoc version prints it); default: now, with --wait"
    )
    s.add_argument(
        "--wait",
        type=seconds_between(0.1, 86400.0),
        metavar="SECONDS",
        help="first wait up to SECONDS until another agent changes something (since --since)",
    )
    s = command(
        "watch",
        "print changes as they happen",
        "Print changes as they happen (one line, or one JSON object, each), first those since "
        "--since: `crdtdoc watch --since $TOKEN` misses nothing between two commands.",
        _watch,
    )
    s.add_argument("--since", help="a version token: first print what changed since it")
    s.add_argument(
        "--for",
        dest="seconds",
        type=seconds_between(0.1, 86400.0),
        default=None,
        help="stop after SECONDS (default: until interrupted)",
        metavar="SECONDS",
    )
    s = command(
        "number",
        "the next unique number of a sequence (decided by the hub)",
        "The next number of SEQUENCE: strictly increasing, never handed out twice (recorded by "
        "the hub before it answers), e.g. for migration or ticket numbers.",
        _number,
    )
    s.add_argument("sequence")
    command(
        "artifacts",
        "the room's artifacts and their kinds",
        "The room's artifacts: documents, task lists, specs and maps, by name.",
        _artifacts,
    )
    command(
        "peers",
        "who else is in the room",
        "Who else is in the room, with their status and task.",
        _peers,
    )

    s = command(
        "status",
        "show the others what you are doing (kept by the hub after the command ends)",
        "Show the other agents a status, and the task you work on, in `crdtdoc peers`, the MCP "
        "server's list_peers and Yjs editors. The hub keeps it for --for seconds after this "
        "command ends (setting it again replaces it); --clear removes it.",
        _status,
    )
    s.add_argument("status", nargs="?", help="a short status, e.g. 'reviewing the schema'")
    s.add_argument("--task", help="the task you work on")
    s.add_argument(
        "--for",
        dest="seconds",
        type=seconds_between(1.0, 86400.0),
        default=600.0,
        metavar="SECONDS",
        help="how long it shows (1 to 86400; default 600)",
    )
    s.add_argument("--clear", action="store_true", help="remove your status")

    lease = group(
        "lease",
        "exclusive leases with fencing tokens, decided by the hub (acquire, renew, release, list)",
        _lease,
    )

    def add_ttl(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--ttl",
            type=seconds_between(0.1, 3600.0),
            default=60.0,
            help="seconds it lasts unless renewed or released (0.1 to 3600; default 60)",
        )

    s = action(lease, "acquire", "take a lease; prints its fencing token (exit 5 if held)")
    s.add_argument("lease", type=lease_name, help="the lease's name, e.g. deploy or migrations")
    add_ttl(s)
    s.add_argument(
        "--wait",
        type=seconds_between(0.0, 300.0),
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS in a fair queue while another agent holds it (default 0)",
    )
    s = action(
        lease,
        "renew",
        "extend a lease you hold (exit 4 if it expired or changed hands, 7 if another agent "
        "holds it)",
    )
    s.add_argument("lease", type=lease_name)
    s.add_argument("token_value", metavar="TOKEN", type=fencing_token, help="its fencing token")
    add_ttl(s)
    s = action(
        lease,
        "release",
        "give a lease back (exit 4 if it expired or changed hands, 7 if another agent holds it)",
    )
    s.add_argument("lease", type=lease_name)
    s.add_argument("token_value", metavar="TOKEN", type=fencing_token, help="its fencing token")
    action(lease, "list", "every lease held in the room: holder, time left, who waits")

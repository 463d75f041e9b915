"""The command line for agents, shared part: connecting to a hub room, guarded writes, printing
results and the exit code of each error. The commands live in `artifact_cli` (doc, tasks, spec)
and `room_cli` (changes, watch, number, lease, status, peers, artifacts).

Every command connects (`--hub`, `--room`, `--agent`, `--token`, or the environment variables
CRDTDOC_HUB, CRDTDOC_ROOM, CRDTDOC_AGENT, CRDTDOC_TOKEN), does its work, waits until the hub has
stored it durably, prints the result on stdout and the new version token on stderr, and exits
with a code that says what happened (see `EXIT_CODES`). `--json` prints one JSON object for
programs; otherwise the output is text for people.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from crdtdoc.client.coordination import Fence
from crdtdoc.errors import (
    AlreadyClaimed,
    AmbiguousText,
    AuthError,
    ConcurrentValues,
    CrdtdocError,
    Deadlock,
    FencedOut,
    Forbidden,
    FrozenError,
    HubStorageError,
    InvalidValue,
    InvalidVersionToken,
    LeaseHeld,
    LeaseLost,
    NotConnected,
    NotFound,
    Refused,
    ReviewRefused,
    StaleRead,
    SyncTimeout,
    UsageError,
    WrongKind,
)
from crdtdoc.protocol.requests import check_name
from crdtdoc.tokens import check_token_agent

if TYPE_CHECKING:  # the client loads when a command connects, not for --help
    from crdtdoc.client.blocking import BlockingReplica
    from crdtdoc.client.identity import ClientIdFile

EPILOG = (
    "Exit codes: 0 done; 3 hub unreachable (--connect-timeout) or not answering (--timeout); "
    "4 stale (others changed what "
    "--expect read, or the --fence lease is no longer yours); 5 held by another (a claimed task "
    "or a lease: the holder is named) or waiting would deadlock; 6 conflicting spec values; "
    "7 refused (bad token, room out of scope, forbidden, frozen, too large, a review gate "
    "that does not take your word); 8 not found or not "
    "unique; 9 the hub cannot store now (it keeps the change); 1 other errors; 2 bad usage; "
    "130 interrupted; 141 the reader of the output went away."
)

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The subcommands a command module adds its parsers to."""


EXIT_CODES: list[tuple[type[CrdtdocError], int]] = [
    (StaleRead, 4),  # others changed what an --expect write read (Conflict is a StaleRead)
    (FencedOut, 4),  # the --fence lease is no longer current: acquire it again
    (LeaseLost, 4),  # renewing or releasing a lease that expired or changed hands
    (AlreadyClaimed, 5),
    (LeaseHeld, 5),  # another agent holds it: the holder is named
    (Deadlock, 5),  # waiting for it would close a cycle of waits: the cycle is named
    (ConcurrentValues, 6),  # a spec member has several concurrent values
    (Refused, 7),  # TooLarge too: refused before it was sent
    (Forbidden, 7),
    (AuthError, 7),  # a missing, bad or expired token: refused at once, not retried
    (FrozenError, 7),
    (ReviewRefused, 7),  # a review gate does not take this agent's word
    (NotFound, 8),
    (AmbiguousText, 8),
    (WrongKind, 8),  # the name is another kind of artifact
    (UsageError, 2),  # a setting missing or wrong, a version token that is not one
    (NotConnected, 3),
    (SyncTimeout, 3),
    (HubStorageError, 9),  # the hub holds the change in memory and stores it once it can
]
"""Exit code per error (first match wins); any other crdtdoc error exits 1."""


def exit_code(exc: CrdtdocError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 1


# -- connecting --------------------------------------------------------------------------------


def setting(args: argparse.Namespace, name: str, env: str) -> str:
    given = getattr(args, name)
    if given is not None and not given.strip():  # an unset shell variable: not the environment's
        raise UsageError(f"--{name} is empty: pass a value, or leave the option out to use {env}")
    value = given or os.environ.get(env)
    if not value:
        raise UsageError(f"no {name}: pass --{name} or set {env}")
    return str(value)


@contextmanager
def connected_replica(
    args: argparse.Namespace, *, history: bool = False
) -> Iterator[BlockingReplica]:
    """A replica of the room the options name, synced, for one command (`history=True`: one
    that keeps deleted content, for commands that read the past)."""
    hubs = setting(args, "hub", "CRDTDOC_HUB")
    room = setting(args, "room", "CRDTDOC_ROOM")
    agent = setting(args, "agent", "CRDTDOC_AGENT")
    token = args.token or os.environ.get("CRDTDOC_TOKEN")
    quiet_logs(args)
    from crdtdoc.client.blocking import connect_blocking
    from crdtdoc.client.connection import room_urls
    from crdtdoc.client.identity import ClientIdFile

    try:
        urls = room_urls(hubs, room)
        check_token_agent(token, agent)
    except InvalidValue as exc:
        raise UsageError(str(exc)) from None
    identity = ClientIdFile(hubs, room, agent)  # one client id per agent: short tokens
    try:
        try:
            replica = connect_blocking(
                urls,
                agent=agent,
                token=token,
                open_timeout=args.timeout,
                connect_timeout=args.connect_timeout,
                client_id=identity.client_id,
                history=history,
            )
        except NotConnected as exc:  # say it in the shell's terms, not the Python API's
            what, within, option = (
                ("sync with", args.timeout, "--timeout")
                if exc.reached
                else ("reach", min(args.connect_timeout, args.timeout), "--connect-timeout")
            )
            raise NotConnected(
                f"cannot {what} the hub at {', '.join(urls)} within {within:g} s "
                f"({exc.reason or 'no answer'}); "
                "check --hub (or CRDTDOC_HUB) and that `crdtdoc serve` is running there, or "
                f"raise {option}"
            ) from None
        with replica:
            try:
                yield replica
            except DECIDED:  # the hub (or this process) decided: nothing in flight
                _confirm(replica, identity, args)
                raise
            _confirm(replica, identity, args)
    finally:
        identity.close()


def quiet_logs(args: argparse.Namespace) -> None:
    """A command reports its own outcome (the result, or one error line): the link's warnings
    ("the hub denied permission", "resyncing"...) show only with --log-level (or
    CRDTDOC_LOG_LEVEL) warning, info or debug, as JSON lines."""
    from crdtdoc.server.logs import configure  # the apps' own log format

    level = getattr(args, "log_level", None) or os.environ.get("CRDTDOC_LOG_LEVEL") or "critical"
    if level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise UsageError(f"CRDTDOC_LOG_LEVEL={level!r}: use debug, info, warning or error")
    configure(level)


DECIDED = (
    UsageError,
    ReviewRefused,
    StaleRead,
    FencedOut,
    LeaseLost,
    AlreadyClaimed,
    LeaseHeld,
    Deadlock,
    ConcurrentValues,
    FrozenError,
    Forbidden,
    NotFound,
    AmbiguousText,
    WrongKind,
    InvalidValue,
    InvalidVersionToken,
)
"""Refusals that leave nothing of the command's client id in flight (a refused guarded write
is undone before it is sent, or refused whole): the id may be reused. A timeout, a lost link
or a write refused after it was sent leaves it unclean, and the next command takes a new one."""


def _confirm(replica: BlockingReplica, identity: ClientIdFile, args: argparse.Namespace) -> None:
    """Marks the client id clean for the next command once the hub stored what it wrote."""
    with contextlib.suppress(CrdtdocError):  # unconfirmed: the id is not reused
        replica.flush(timeout=min(args.timeout, 5.0))
        identity.confirm()


def print_result(
    args: argparse.Namespace, replica: BlockingReplica, result: dict[str, Any]
) -> None:
    """Waits until the hub stored this replica's changes, then prints the result."""
    replica.flush(timeout=args.timeout)
    result["version"] = getattr(args, "at", None) or replica.version().token()  # what was read
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "lines"}, ensure_ascii=False))
        return
    text = result.get("text")
    if isinstance(text, str):
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    for line in result.get("lines", []):
        print(line)
    print(f"version {result['version']}", file=sys.stderr)  # stdout: the result alone


def read_text(source: str) -> str:
    """The text of a file (or standard input, `-`), refused unless it is UTF-8."""
    try:
        if source == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        with open(source, "rb") as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "standard input" if source == "-" else source
        raise InvalidValue(
            f"{where} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); convert it first, for example with iconv; nothing was changed"
        ) from None


def _version(args: argparse.Namespace) -> int:
    with connected_replica(args) as r:
        token = r.version().token()  # the result: TOKEN=$(crdtdoc version) works
        print_result(
            args,
            r,
            {"clocks": {str(k): v for k, v in r.version().clocks.items()}, "lines": [token]},
        )
    return 0


def write_guard(
    replica: BlockingReplica, args: argparse.Namespace, name: str
) -> AbstractContextManager[None]:
    """The block's writes to artifact `name` as one guarded commit the hub decides: applied
    only if others did not change `name` since `--expect` and the `--fence` lease is still
    current, refused at once if larger than the hub accepts, and undone here when refused (so
    the command reports exactly what the room holds)."""
    return replica.commit(
        expect=getattr(args, "expect", None), on=[name], fence=getattr(args, "fence", None)
    )


def command_parsers(
    commands: Commands,
) -> tuple[
    Callable[[str, str, Callable[[argparse.Namespace], int]], Any],
    Callable[..., argparse.ArgumentParser],
]:
    """Two builders sharing the connection options and the exit-code epilog: `group(name, help,
    run)` for a command with actions, and `action(group, name, help, write=False)` for one of
    its actions (`write` adds --expect and --fence)."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common)

    def group(name: str, help_: str, run: Callable[[argparse.Namespace], int]) -> Any:
        p = commands.add_parser(name, help=help_, description=help_, epilog=EPILOG)
        p.set_defaults(run=run)
        return p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(p: Any, name: str, help_: str, write: bool = False) -> argparse.ArgumentParser:
        s: argparse.ArgumentParser = p.add_parser(
            name, help=help_, description=help_, parents=[common], epilog=EPILOG
        )
        if write:
            add_write_options(s)
        return s

    return group, action


def simple_commands(commands: Commands) -> Callable[..., argparse.ArgumentParser]:
    """A builder for commands without actions, sharing the connection options and the
    exit-code epilog: `command(name, help, description, run)`."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common)

    def command(name: str, help_: str, description: str, run: Any) -> argparse.ArgumentParser:
        s: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], epilog=EPILOG, help=help_, description=description
        )
        s.set_defaults(run=run)
        return s

    return command


def add_write_options(parser: argparse.ArgumentParser) -> None:
    """--expect TOKEN and --fence NAME:TOKEN, both decided by the hub."""
    parser.add_argument(
        "--expect",
        type=_token,
        help="version token you read (crdtdoc version prints it): the hub refuses the write "
        "(exit 4) if others changed this artifact since",
    )
    parser.add_argument(
        "--fence",
        type=_fence,
        metavar="LEASE:TOKEN",
        help="a lease you hold and its fencing token (crdtdoc lease acquire prints it): the hub "
        "refuses the write (exit 4) unless that token is still the lease's current one",
    )


def _fence(text: str) -> Fence:
    """An argparse type: NAME:TOKEN, a lease and its fencing token."""
    name, _, token = text.rpartition(":")
    try:
        return Fence(lease_name(name), fencing_token(token))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not LEASE:TOKEN (a lease name, a colon, its fencing token)"
        ) from None


def lease_name(text: str) -> str:
    """An argparse type: a lease name the hub takes (`crdtdoc.protocol.requests.check_name`)."""
    try:
        return check_name(text, "a lease name")
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fencing_token(text: str) -> int:
    """An argparse type: a fencing token, a positive integer below 2**63."""
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fencing token (a positive integer)")
    return int(text)


def _token(text: str) -> str:
    """An argparse type: a version token, never empty (`--expect "$TOKEN"` with TOKEN unset
    would otherwise guard nothing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty version token guards nothing: pass one")
    return text


def seconds_between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from `low` to `high` (bad usage otherwise)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g} s")
        return value

    return parse


def add_connection_options(parser: argparse.ArgumentParser, *, output: bool = True) -> None:
    """--hub, --room, --agent, --token (each also from CRDTDOC_*), and with `output` the
    --timeout and --json of commands that print a result."""
    group = parser.add_argument_group("connection (or CRDTDOC_HUB, _ROOM, _AGENT, _TOKEN)")
    group.add_argument("--hub", help="hub URL, e.g. ws://127.0.0.1:8765 (several: comma-separated)")
    group.add_argument("--room", help="the room to work in")
    group.add_argument("--agent", help="who you are (as your token says, with a secret)")
    group.add_argument("--token", help="access token from `crdtdoc token create`")
    if output:
        group.add_argument(
            "--timeout",
            type=seconds_between(0.1, 86400.0),
            default=30.0,
            help="seconds to wait for the hub's answers: the first sync, and storing a write "
            "(default 30)",
        )
        group.add_argument(
            "--connect-timeout",
            type=seconds_between(0.1, 86400.0),
            default=5.0,
            help="seconds to wait for a hub to accept the connection: a hub that is down fails "
            "after this (exit 3; default 5)",
        )
        group.add_argument("--json", action="store_true", help="print one JSON object")
        group.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            help="also log the link's events as JSON lines on stderr (default: none; the "
            "command prints its own error; or CRDTDOC_LOG_LEVEL)",
        )


def add_version_options(version: argparse.ArgumentParser) -> None:
    """`crdtdoc version` (no action): the room's current version token."""
    add_connection_options(version)
    version.set_defaults(run=_version)

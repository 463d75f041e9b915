"""The command line for agents: read and change a room's artifacts through a hub, one command at a
time (`crdtdoc doc|tasks|spec|changes|watch|version|peers`).

Every command connects (`--hub`, `--room`, `--agent`, `--token`, or the environment variables
CRDTDOC_HUB, CRDTDOC_ROOM, CRDTDOC_AGENT, CRDTDOC_TOKEN), does its work, waits until the hub has
stored it durably, prints the result and the new version token, and exits with a code that says
what happened (see `EXIT_CODES`). `--json` prints one JSON object for programs; otherwise the
output is text for people.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from crdtdoc.artifacts.tasks import TaskList
from crdtdoc.client.blocking import BlockingReplica, connect_blocking
from crdtdoc.client.connection import room_urls
from crdtdoc.client.identity import ClientIdFile
from crdtdoc.errors import (
    AlreadyClaimed,
    AmbiguousText,
    AuthError,
    ConflictError,
    CrdtdocError,
    Forbidden,
    FrozenError,
    HubStorageError,
    InvalidValue,
    LeaseHeld,
    LeaseLost,
    NotConnected,
    NotFound,
    Refused,
    StaleRead,
    SyncTimeout,
)
from crdtdoc.versions import Version


class BadUsage(CrdtdocError):
    """A command was run without a setting it needs, or with one that cannot be right (exit 2)."""


EXIT_CODES: list[tuple[type[CrdtdocError], int]] = [
    (BadUsage, 2),
    (StaleRead, 4),  # others changed what an --expect write read (Conflict is a StaleRead)
    (AlreadyClaimed, 5),
    (ConflictError, 6),  # a spec member has several concurrent values
    (Refused, 7),
    (Forbidden, 7),
    (AuthError, 7),  # a missing, bad or expired token: refused at once, not retried
    (FrozenError, 7),
    (NotFound, 8),
    (AmbiguousText, 8),
    (NotConnected, 3),
    (SyncTimeout, 3),
    (HubStorageError, 9),  # the hub holds the change in memory and stores it once it can
]
"""Exit code per error (first match wins); any other crdtdoc error exits 1, bad usage 2."""


def exit_code(exc: CrdtdocError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 1


# -- connecting --------------------------------------------------------------------------------


def _setting(args: argparse.Namespace, name: str, env: str) -> str:
    value = getattr(args, name) or os.environ.get(env)
    if not value:
        raise BadUsage(f"no {name}: pass --{name} or set {env}")
    return str(value)


def _existing(r: BlockingReplica, name: str, kind: str, empty: Callable[[], bool]) -> None:
    """Raises `NotFound` (exit 8) when reading an artifact the room does not have: not
    recorded (call this before opening it: opening declares it) and `empty()`, so a mistyped
    name is not mistaken for an empty artifact."""
    kinds = r.artifacts()
    if kinds.get(name) != kind and empty():
        known = ", ".join(sorted(n for n, k in kinds.items() if k == kind)) or "none"
        raise NotFound(f"this room has no {kind} named {name!r} (its {kind}s: {known})")


@contextmanager
def _replica(args: argparse.Namespace) -> Iterator[BlockingReplica]:
    hubs = _setting(args, "hub", "CRDTDOC_HUB")
    room = _setting(args, "room", "CRDTDOC_ROOM")
    agent = _setting(args, "agent", "CRDTDOC_AGENT")
    token = args.token or os.environ.get("CRDTDOC_TOKEN")
    try:
        urls = room_urls(hubs, room)
    except InvalidValue as exc:
        raise BadUsage(str(exc)) from None
    identity = ClientIdFile(hubs, room, agent)  # one client id per agent: short tokens
    try:
        try:
            replica = connect_blocking(
                urls,
                agent=agent,
                token=token,
                open_timeout=args.timeout,
                client_id=identity.client_id,
            )
        except NotConnected as exc:  # say it in the shell's terms, not the Python API's
            raise NotConnected(
                f"cannot reach the hub at {', '.join(urls)} within {args.timeout:g} s "
                f"({exc.reason or 'no answer'}); "
                "check --hub (or CRDTDOC_HUB) and that `crdtdoc serve` is running there, or "
                "raise --timeout"
            ) from None
        with replica:
            yield replica
            with contextlib.suppress(CrdtdocError):  # unconfirmed: the id is not reused
                replica.flush(timeout=min(args.timeout, 5.0))
                identity.confirm()
    finally:
        identity.close()


def _done(args: argparse.Namespace, replica: BlockingReplica, result: dict[str, Any]) -> None:
    """Waits until the hub stored this replica's changes, then prints the result."""
    replica.flush(timeout=args.timeout)
    result["version"] = replica.version().token()
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "lines"}, ensure_ascii=False))
        return
    text = result.get("text")
    if isinstance(text, str):
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    for line in result.get("lines", []):
        print(line)
    print(f"version {result['version']}", file=sys.stderr)  # stdout: the result alone


def _read_text(source: str) -> str:
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


def _value(raw: str) -> Any:
    """A spec value: JSON if it parses (numbers, objects, true...), else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# -- commands ----------------------------------------------------------------------------------


def _doc(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        if args.action == "cat":
            _existing(r, args.name, "document", lambda: not r.document(args.name).read())
        doc = r.document(args.name)
        if args.action == "cat":
            if args.delta:
                ops = json.dumps(doc.delta(), ensure_ascii=False)
                _done(args, r, {"delta": doc.delta()} if args.json else {"text": ops})
            else:
                _done(args, r, {"text": doc.read()})
            return 0
        with r.transaction(expect=args.expect, on=[args.name]) if args.expect else nullcontext():
            if args.action == "append":
                doc.append(_read_text(args.source))
            elif args.action == "write":
                base = None if args.base is None else _read_text(args.base)
                doc.write(_read_text(args.source), base=base)
            else:  # edit
                doc.replace(args.old, args.new)
        _done(args, r, {"lines": [f"{args.action} {args.name}: {len(doc.read())} characters"]})
    return 0


def _task_row(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "assignee": task.assignee,
        "contested": task.contested,
        "description": task.description,
        "claimants": task.claimants,
        "completed_by": task.completed_by,
        "depends_on": task.depends_on,
        "labels": task.labels,
        "created_by": task.created_by,
        "notes": [{"agent": n.agent, "text": n.text} for n in task.notes],
    }


def _tasks(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        if args.action == "list":
            _existing(r, args.name, "tasks", lambda: not r.tasks(args.name).list())
        tasks = r.tasks(args.name)
        action = args.action
        if action in ("list", "ready"):
            everything = tasks.list() if action == "list" else tasks.ready()
            rows = [
                _task_row(t)
                for t in everything
                if action == "ready"
                or args.status is None
                or (t.contested if args.status == "contested" else t.status == args.status)
            ]
            lines = [
                f"{t['id']}  {t['status']:<9} {t['assignee'] or '-':<12} {t['title']}" for t in rows
            ]
            _done(args, r, {"tasks": rows, "lines": lines})
            return 0
        with r.transaction(expect=args.expect, on=[args.name]) if args.expect else nullcontext():
            if action == "add":
                task_id = tasks.add(args.title, args.description or "")
                _done(args, r, {"id": task_id, "lines": [task_id]})
                return 0
            if action == "claim":
                _claim(r, tasks, args.id, args.ttl)
            elif action == "release":
                _unclaim(r, tasks, args.id)
                tasks.release(args.id)
            elif action == "done":
                tasks.complete(args.id, args.note)
                _unclaim(r, tasks, args.id)
            elif action == "note":
                tasks.note(args.id, args.text)
            elif action == "reopen":
                _unclaim(r, tasks, args.id)  # reopening removes every claim, ours included
                tasks.reopen(args.id)
        task = tasks.get(args.id)
        lines = [task.describe()]
        if action == "show":
            lines += [task.description] if task.description else []
            lines += [f"  note by {n.agent}: {n.text}" for n in task.notes]
            lines += [f"  done by {', '.join(task.completed_by)}"] if task.completed_by else []
        _done(args, r, {"task": _task_row(task), "lines": lines})
    return 0


def _claim(r: BlockingReplica, tasks: TaskList, task_id: str, ttl: float) -> None:
    """An exclusive claim decided by the hub: a lease the process does not keep renewing, so
    it lasts `ttl` seconds unless released, completed or claimed again (which renews it)."""
    tasks.claimable(task_id)
    name = tasks.lease_name(task_id)
    try:
        token = int(r.request("acquire", {"name": name, "ttl": ttl, "wait": 0})["token"])
    except LeaseHeld as held:
        mine = tasks.claim_lease(task_id)
        if held.holder != r.agent or mine is None:
            raise tasks.claimed_by(task_id, held.holder) from None
        r.request("renew", {"name": name, "token": mine, "ttl": ttl})  # ours: held longer
        return
    tasks.record_claim(task_id, token)


def _unclaim(r: BlockingReplica, tasks: TaskList, task_id: str) -> None:
    """Releases the hub lease behind this agent's claim, if it has one."""
    token = tasks.claim_lease(task_id)
    if token is not None:
        with contextlib.suppress(LeaseLost):  # expired already, or taken over
            r.request("release", {"name": tasks.lease_name(task_id), "token": token})


def _spec(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        spec = r.spec(args.name)
        action = args.action
        if action == "get":
            value = spec.get(args.member)  # ConflictError (exit 6) lists every value
            _done(args, r, {"member": args.member, "value": value, "lines": [json.dumps(value)]})
            return 0
        if action == "show":
            shown = spec.summary()
            lines = [json.dumps(shown, ensure_ascii=False, indent=2)]
            _done(args, r, {**shown, "lines": lines})
            return 0
        if action == "conflicts":
            found = {
                m: [{"value": v.value, "by": v.agent} for v in values]
                for m, values in spec.conflicts().items()
            }
            lines = [
                f"{m}: " + " | ".join(f"{json.dumps(v['value'])} (by {v['by']})" for v in vs)
                for m, vs in found.items()
            ]
            _done(args, r, {"conflicts": found, "lines": lines or ["no conflicts"]})
            return 0
        with r.transaction(expect=args.expect, on=[args.name]) if args.expect else nullcontext():
            if action == "set":
                spec.set(args.member, _value(args.value))
            elif action == "resolve":
                spec.resolve(args.member, _value(args.value))
            else:  # freeze
                spec.freeze()
        _done(
            args,
            r,
            {
                "lines": [
                    f"{action} {args.name}" + (f".{args.member}" if action != "freeze" else "")
                ]
            },
        )
    return 0


def _changes(args: argparse.Namespace) -> int:
    if args.since is None and args.wait is None:
        raise BadUsage("pass --since TOKEN (crdtdoc version prints one), or --wait SECONDS")
    with _replica(args) as r:
        since = Version.from_token(args.since) if args.since else r.version()
        if args.wait is not None:  # block until others change something (or the time is up)
            with contextlib.suppress(SyncTimeout):
                r._wait_until(
                    lambda: bool(r.changes_by_others(since, (), r.client_id)),
                    args.wait,
                    "nothing changed",
                )
        changes = r.changes_since(since)
        _done(
            args,
            r,
            {
                "changes": [
                    {"agent": c.agent, "kind": c.kind, "artifact": c.artifact, "text": c.describe()}
                    for c in changes
                ],
                "lines": [c.describe() for c in changes] or ["no changes"],
            },
        )
    return 0


def _version(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        token = r.version().token()  # the result: TOKEN=$(crdtdoc version) works
        _done(
            args,
            r,
            {"clocks": {str(k): v for k, v in r.version().clocks.items()}, "lines": [token]},
        )
    return 0


def _number(args: argparse.Namespace) -> int:
    """The next number of a sequence, decided and recorded by the hub: never handed out twice."""
    with _replica(args) as r:
        value = int(r.request("next", {"sequence": args.sequence})["value"])
        _done(args, r, {"sequence": args.sequence, "value": value, "lines": [str(value)]})
    return 0


def _artifacts(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        kinds = r.artifacts()
        lines = [f"{kind:<9} {name}" for name, kind in sorted(kinds.items())]
        _done(args, r, {"artifacts": kinds, "lines": lines or ["no artifacts yet"]})
    return 0


def _peers(args: argparse.Namespace) -> int:
    with _replica(args) as r:
        deadline = time.monotonic() + min(args.timeout, 1.0)  # presence arrives just after sync
        while time.monotonic() < deadline and not r.peers():
            time.sleep(0.05)
            r.poll()
        peers = [{"agent": p.agent, "status": p.status, "task": p.task} for p in r.peers()]
        lines = [f"{p['agent']}  {p['status'] or '-'}  {p['task'] or '-'}" for p in peers]
        _done(args, r, {"peers": peers, "lines": lines or ["nobody else is here"]})
    return 0


def _watch(args: argparse.Namespace) -> int:
    """Prints changes as they arrive, until interrupted or `--for` seconds pass."""
    with _replica(args) as r:
        emit: Callable[[dict[str, Any]], None] = (
            (lambda c: print(json.dumps(c, ensure_ascii=False), flush=True))
            if args.json
            else (lambda c: print(c["text"], flush=True))
        )

        def report(changes: list[Any]) -> None:
            for c in changes:
                emit(
                    {
                        "agent": c.agent,
                        "artifact": c.artifact,
                        "text": c.describe(),
                        "version": r.version().token(),
                    }
                )

        # From the change feed rather than per commit: a deletion and its record in the
        # deletions log (who deleted) arrive as two commits, and only the feed joins them.
        mark = r.version()
        stop = time.monotonic() + args.seconds if args.seconds else None
        try:
            while stop is None or time.monotonic() < stop:
                r.poll()
                now = r.version()
                if now != mark:
                    report(r.changes_since(mark))
                    mark = now
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    return 0


# -- the parser --------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common)
    epilog = (
        "Exit codes: 0 done; 3 hub unreachable or not answering; 4 stale read (others changed "
        "what --expect was based on); 5 already claimed (the holder is named); 6 conflicting "
        "spec values; 7 refused (bad token, room out of scope, forbidden, frozen); 8 not found "
        "or not unique; 9 the hub cannot store now (it keeps the change); 1 other errors; "
        "2 bad usage; 130 interrupted; 141 the reader of the output went away."
    )

    def parser(name: str, help_: str, run: Callable[[argparse.Namespace], int]) -> Any:
        p = commands.add_parser(name, help=help_, description=help_, epilog=epilog)
        p.set_defaults(run=run)
        return p

    def sub(p: Any, name: str, help_: str, expect: bool = False) -> argparse.ArgumentParser:
        s: argparse.ArgumentParser = p.add_parser(
            name, help=help_, description=help_, parents=[common], epilog=epilog
        )
        if expect:
            s.add_argument(
                "--expect",
                type=_token,
                help="version token you read (crdtdoc version prints it): refuse (exit 4) if "
                "others changed this artifact since",
            )
        return s

    doc = parser("doc", "read and change a shared document", _doc).add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    s = sub(doc, "cat", "print the document (each embed, e.g. an image, shows as U+FFFC)")
    s.add_argument("name")
    s.add_argument(
        "--delta",
        action="store_true",
        help="print its Quill-style delta instead: text runs with their formatting, and embeds",
    )
    s = sub(doc, "write", "make the document equal a file's text (a minimal diff)", expect=True)
    s.add_argument("name")
    s.add_argument("source", nargs="?", default="-", help="file with the new text (- for stdin)")
    s.add_argument(
        "--base",
        metavar="FILE",
        help="file with the text you edited (as doc cat printed it): others' changes since are "
        "kept, and a change to the same place is refused (exit 4) instead of undone",
    )
    s = sub(doc, "append", "add a file's text at the end of the document", expect=True)
    s.add_argument("name")
    s.add_argument("source", nargs="?", default="-", help="file with the text (- for stdin)")
    s = sub(doc, "edit", "replace one unique piece of text", expect=True)
    s.add_argument("name")
    s.add_argument("--old", required=True, help="the text to replace (must occur once)")
    s.add_argument("--new", required=True, help="what replaces it")

    tasks = parser("tasks", "list, add, claim, release and complete tasks", _tasks)
    actions = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub(actions, "list", "list tasks")
    s.add_argument("name")
    s.add_argument("--status", choices=["open", "claimed", "contested", "done"])
    s = sub(actions, "add", "add a task; prints its id", expect=True)
    s.add_argument("name")
    s.add_argument("title")
    s.add_argument("--description")
    s = sub(actions, "ready", "list open tasks whose dependencies are all done")
    s.add_argument("name")
    for action, help_ in (
        ("show", "print a task whole: description, claims, notes, who completed it"),
        ("claim", "claim a task, exclusively: the hub decides (exit 5 naming the holder)"),
        ("release", "give up your claim"),
        ("done", "mark a task done"),
        ("reopen", "make a done task open again"),
    ):
        s = sub(actions, action, help_, expect=True)
        s.add_argument("name")
        s.add_argument("id")
        if action == "claim":
            s.add_argument(
                "--ttl",
                type=_seconds(0.1, 3600.0),
                default=3600.0,
                help="seconds the claim lasts unless you release or complete the task "
                "(0.1 to 3600; claim it again to renew; default 3600)",
            )
        if action == "done":
            s.add_argument("--note", help="a note to leave with it")
    s = sub(actions, "note", "add a note to a task", expect=True)
    s.add_argument("name")
    s.add_argument("id")
    s.add_argument("text")

    spec = parser("spec", "read and set interface spec members; see and resolve conflicts", _spec)
    actions = spec.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub(actions, "get", "print a member's value (exit 6 with every value if they conflict)")
    s.add_argument("name")
    s.add_argument("member")
    for action in ("set", "resolve"):
        s = sub(actions, action, f"{action} a member (VALUE is JSON, or a plain string)", True)
        s.add_argument("name")
        s.add_argument("member")
        s.add_argument("value")
    s = sub(actions, "show", "print the whole spec: values, conflicts, whether it is frozen")
    s.add_argument("name")
    s = sub(actions, "conflicts", "list members with several concurrent values")
    s.add_argument("name")
    s = sub(actions, "freeze", "freeze the spec: later writes are refused", expect=True)
    s.add_argument("name")

    s = commands.add_parser(
        "changes",
        parents=[common],
        epilog=epilog,
        help="what changed since a version token, agent by agent",
        description="What changed since a version token, agent by agent.",
    )
    s.add_argument(
        "--since", help="a version token (crdtdoc version prints it); default: now, with --wait"
    )
    s.add_argument(
        "--wait",
        type=_seconds(0.1, 86400.0),
        metavar="SECONDS",
        help="first wait up to SECONDS until another agent changes something (since --since)",
    )
    s.set_defaults(run=_changes)
    s = commands.add_parser(
        "watch",
        parents=[common],
        epilog=epilog,
        help="print changes as they happen",
        description="Print changes as they happen (one line, or one JSON object, each).",
    )
    s.add_argument("--for", dest="seconds", type=float, default=None, help="stop after seconds")
    s.set_defaults(run=_watch)
    for name, run, help_, description in (
        (
            "number",
            _number,
            "the next unique number of a sequence (decided by the hub)",
            "The next number of SEQUENCE: strictly increasing, never handed out twice "
            "(recorded by the hub before it answers), e.g. for migration or ticket numbers.",
        ),
        (
            "artifacts",
            _artifacts,
            "the room's artifacts and their kinds",
            "The room's artifacts: documents, task lists, specs and maps, by name.",
        ),
        (
            "peers",
            _peers,
            "who else is in the room",
            "Who else is in the room, with their status and task.",
        ),
    ):
        s = commands.add_parser(
            name, parents=[common], epilog=epilog, help=help_, description=description
        )
        if name == "number":
            s.add_argument("sequence")
        s.set_defaults(run=run)


def _token(text: str) -> str:
    """An argparse type: a version token, never empty (`--expect "$TOKEN"` with TOKEN unset
    would otherwise guard nothing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty version token guards nothing: pass one")
    return text


def _seconds(low: float, high: float) -> Callable[[str], float]:
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
            type=_seconds(0.1, 86400.0),
            default=30.0,
            help="seconds to wait for the hub",
        )
        group.add_argument("--json", action="store_true", help="print one JSON object")


def add_version_options(version: argparse.ArgumentParser) -> None:
    """`crdtdoc version` (no action): the room's current version token."""
    add_connection_options(version)
    version.set_defaults(run=_version)

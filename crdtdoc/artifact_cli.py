"""`crdtdoc doc|tasks|spec`: read and change a room's documents, task lists and interface specs.

Every change travels as one guarded commit the hub decides (`agent_cli.write_guard`): `--expect`
and `--fence` are judged there, not only against this process's copy, a write larger than the hub
accepts is refused before it is sent, and the version printed contains the change. A claim is a
hub lease (exclusive: the loser is told who holds the task), recorded in the task list.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import TYPE_CHECKING, Any

from crdtdoc.agent_cli import (
    Commands,
    command_parsers,
    connected_replica,
    print_result,
    read_text,
    seconds_between,
    write_guard,
)
from crdtdoc.errors import LeaseHeld, LeaseLost
from crdtdoc.history_cli import add_blame_action, blame_document

if TYPE_CHECKING:  # loaded when a command runs, not for --help
    from crdtdoc.artifacts.tasks import TaskList
    from crdtdoc.client.blocking import BlockingReplica


def _value(raw: str) -> Any:
    """A spec value: JSON if it parses (numbers, objects, true...), else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _doc(args: argparse.Namespace) -> int:
    if args.action == "blame":
        return blame_document(args)
    at = getattr(args, "at", None)
    with connected_replica(args, history=at is not None) as r:
        if args.action in ("cat", "edit"):
            r.require(args.name, "document")
        doc = (r.at(at) if at else r).document(args.name)
        if args.action == "cat":
            if args.delta:
                delta = doc.delta()
                ops = json.dumps(delta, ensure_ascii=False)
                print_result(args, r, {"delta": delta} if args.json else {"text": ops})
            else:
                print_result(args, r, {"text": doc.read()})
            return 0
        text = None if args.action == "edit" else read_text(args.source)
        base = None if getattr(args, "base", None) is None else read_text(args.base)
        with write_guard(r, args, args.name):
            if args.action == "append":
                doc.append(text or "")
            elif args.action == "write":
                doc.write(text or "", base=base)
            else:  # edit
                doc.replace(args.old, args.new)
        length = len(doc.read())
        done = (
            f"appended {len(text or '')} characters to {args.name} (now {length})"
            if args.action == "append"
            else f"{'wrote' if args.action == 'write' else 'edited'} {args.name} (now {length} "
            "characters)"
        )
        print_result(args, r, {"characters": length, "lines": [done]})
    return 0


def _tasks(args: argparse.Namespace) -> int:
    at = getattr(args, "at", None)
    with connected_replica(args, history=at is not None) as r:
        if args.action in ("list", "ready", "show"):
            r.require(args.name, "tasks")
        tasks = (r.at(at) if at else r).tasks(args.name)
        action = args.action
        if action in ("list", "ready"):
            everything = tasks.list() if action == "list" else tasks.ready()
            shown = [
                t
                for t in everything
                if action == "ready"
                or args.status is None
                or (t.contested if args.status == "contested" else t.status == args.status)
            ]
            lines = [f"{t.id}  {t.status:<9} {t.assignee or '-':<12} {t.title}" for t in shown]
            print_result(args, r, {"tasks": [t.to_json() for t in shown], "lines": lines})
            return 0
        if action == "add":
            with write_guard(r, args, args.name):
                task_id = tasks.add(
                    args.title,
                    args.description or "",
                    args.depends_on or (),
                    args.label or (),
                    verify=args.verify,
                )
            print_result(args, r, {"id": task_id, "lines": [task_id]})  # the version holds it
            return 0
        if action == "claim":
            _claim(r, args, tasks)
        elif action != "show":
            lease = tasks.claim_lease(args.id)  # read first: these remove our claim's record
            with write_guard(r, args, args.name):
                if action == "release":
                    tasks.release(args.id, strict=True)
                elif action == "done":
                    tasks.complete(args.id, args.note)
                elif action == "note":
                    tasks.note(args.id, args.text)
                elif action == "reopen":
                    tasks.reopen(args.id)  # removes every claim, ours included
                elif action == "verify":
                    tasks.verify(args.id)
            if action != "note" and lease is not None:  # recorded: the lease goes back
                _give_back(r, tasks.lease_name(args.id), lease)
        task = tasks.get(args.id)
        lines = [task.describe()]
        if action == "show":
            lines += [task.description] if task.description else []
            lines += [f"  note by {n.agent}: {n.text}" for n in task.notes]
            lines += [f"  done by {', '.join(task.completed_by)}"] if task.completed_by else []
            if task.verify:
                who = ", ".join(task.verified_by) or "nobody yet"
                lines.append(f"  needs {task.verify} verification(s) by others; verified by: {who}")
        print_result(args, r, {"task": task.to_json(), "lines": lines})
    return 0


def _claim(r: BlockingReplica, args: argparse.Namespace, tasks: TaskList) -> None:
    """An exclusive claim decided by the hub: a lease the process does not keep renewing, so
    it lasts `--ttl` seconds unless released, completed or claimed again (which renews it),
    then recorded in the task list (given back if that record is refused)."""
    task_id, ttl = args.id, args.ttl
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
    try:
        with write_guard(r, args, args.name):
            tasks.record_claim(task_id, token)
    except BaseException:
        with contextlib.suppress(Exception):  # not recorded: not held either
            r.request("release", {"name": name, "token": token})
        raise


def _give_back(r: BlockingReplica, name: str, token: int) -> None:
    """Releases the hub lease behind a claim this agent no longer has."""
    with contextlib.suppress(LeaseLost):  # expired already, or taken over
        r.request("release", {"name": name, "token": token})


def _spec(args: argparse.Namespace) -> int:
    at = getattr(args, "at", None)
    with connected_replica(args, history=at is not None) as r:
        action = args.action
        if action in ("get", "show", "conflicts", "freeze", "approve"):
            r.require(args.name, "spec")  # (a mistyped name frozen would be frozen for good)
        spec = (r.at(at) if at else r).spec(args.name)
        if action == "get":
            value = spec.get(args.member)  # ConcurrentValues (exit 6) lists every value
            result = {"member": args.member, "value": value, "lines": [json.dumps(value)]}
            print_result(args, r, result)
            return 0
        if action == "show":
            shown = spec.summary()
            lines = [json.dumps(shown, ensure_ascii=False, indent=2)]
            print_result(args, r, {**shown, "lines": lines})
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
            print_result(args, r, {"conflicts": found, "lines": lines or ["no conflicts"]})
            return 0
        with write_guard(r, args, args.name):
            if action == "set":
                spec.set(args.member, _value(args.value))
            elif action == "resolve":
                spec.resolve(args.member, _value(args.value))
            elif action == "approve":
                spec.approve()
            else:  # freeze
                spec.freeze(args.approver or (), args.quorum)
        member = f".{args.member}" if action in ("set", "resolve") else ""
        lines = [f"{action} {args.name}{member}"]
        proposed = spec.summary().get("freeze_proposed")
        if action in ("freeze", "approve") and isinstance(proposed, dict):
            lines.append(f"the freeze waits for: {', '.join(proposed['missing'])}")
        print_result(args, r, {"lines": lines, "frozen": spec.frozen})
    return 0


def add_commands(commands: Commands) -> None:
    group, action = command_parsers(commands)

    doc = group("doc", "read and change a shared document", _doc)
    s = action(doc, "cat", "print the document (each embed, e.g. an image, shows as U+FFFC)")
    s.add_argument("name")
    s.add_argument(
        "--delta",
        action="store_true",
        help="print its Quill-style delta instead: text runs with their formatting, and embeds",
    )
    add_at(s)
    add_blame_action(doc, action)
    s = action(doc, "write", "make the document equal a file's text (a minimal diff)", True)
    s.add_argument("name")
    s.add_argument("source", nargs="?", default="-", help="file with the new text (- for stdin)")
    s.add_argument(
        "--base",
        metavar="FILE",
        help="file with the text you edited (as doc cat printed it): others' changes since are "
        "kept, and a change to the same place is refused (exit 4) instead of undone",
    )
    s = action(doc, "append", "add a file's text at the end of the document", True)
    s.add_argument("name")
    s.add_argument("source", nargs="?", default="-", help="file with the text (- for stdin)")
    s = action(doc, "edit", "replace one unique piece of text", True)
    s.add_argument("name")
    s.add_argument("--old", required=True, help="the text to replace (must occur once)")
    s.add_argument("--new", required=True, help="what replaces it")

    tasks = group("tasks", "list, add, claim, release and complete tasks", _tasks)
    s = action(tasks, "list", "list tasks")
    s.add_argument("name")
    add_at(s)
    s.add_argument("--status", choices=["open", "claimed", "contested", "done"])
    s = action(tasks, "add", "add a task; prints its id", True)
    s.add_argument("name")
    s.add_argument("title")
    s.add_argument("--description")
    s.add_argument(
        "--depends-on",
        action="append",
        metavar="ID",
        help="a task that must be done first (repeat for several): `tasks ready` waits for it",
    )
    s.add_argument("--label", action="append", help="a label (repeat for several)")
    s.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="it counts as done once N agents other than whoever completed it verified it",
    )
    s = action(tasks, "ready", "list open tasks whose dependencies are all done")
    s.add_argument("name")
    s = action(tasks, "show", "print a task whole: description, claims, notes, who completed it")
    s.add_argument("name")
    s.add_argument("id")
    add_at(s)
    for name, help_ in (
        ("claim", "claim a task, exclusively: the hub decides (exit 5 naming the holder)"),
        ("release", "give up your claim"),
        ("done", "mark a task done"),
        ("verify", "verify a task another agent completed (a task added with --verify needs it)"),
        ("reopen", "make a done task open again"),
    ):
        s = action(tasks, name, help_, True)
        s.add_argument("name")
        s.add_argument("id")
        if name == "claim":
            s.add_argument(
                "--ttl",
                type=seconds_between(0.1, 3600.0),
                default=3600.0,
                help="seconds the claim lasts unless you release or complete the task "
                "(0.1 to 3600; claim it again to renew; default 3600)",
            )
        if name == "done":
            s.add_argument("--note", help="a note to leave with it")
    s = action(tasks, "note", "add a note to a task", True)
    s.add_argument("name")
    s.add_argument("id")
    s.add_argument("text")

    spec = group("spec", "read and set interface spec members; see and resolve conflicts", _spec)
    s = action(spec, "get", "print a member's value (exit 6 with every value if they conflict)")
    s.add_argument("name")
    s.add_argument("member")
    add_at(s)
    for name in ("set", "resolve"):
        s = action(spec, name, f"{name} a member (VALUE is JSON, or a plain string)", True)
        s.add_argument("name")
        s.add_argument("member")
        s.add_argument("value")
    s = action(spec, "show", "print the whole spec: values, conflicts, whether it is frozen")
    s.add_argument("name")
    add_at(s)
    s = action(spec, "conflicts", "list members with several concurrent values")
    s.add_argument("name")
    s = action(spec, "freeze", "freeze the spec: later writes are refused", True)
    s.add_argument("name")
    s.add_argument(
        "--approver",
        action="append",
        metavar="AGENT",
        help="propose the freeze instead: it takes effect once AGENT approves (repeat for several)",
    )
    s.add_argument(
        "--quorum",
        type=int,
        default=0,
        metavar="N",
        help="propose the freeze instead: it takes effect once N agents other than you approve",
    )
    s = action(spec, "approve", "approve the freeze proposed for the spec", True)
    s.add_argument("name")


def add_at(parser: argparse.ArgumentParser) -> None:
    """--at TOKEN: read the artifact as it was at a version (`crdtdoc history` lists them)."""
    parser.add_argument(
        "--at",
        metavar="TOKEN",
        help="read it as it was at this version (crdtdoc history NAME lists versions)",
    )

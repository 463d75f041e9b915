"""`crdtdoc history|built-on|revert` and `doc blame`: the room's past from the shell.

`history NAME` lists the steps that changed an artifact, each with the version token it led to
(`doc cat --at TOKEN`, `tasks list --at`, `spec show --at` read the artifact as it was then);
`doc blame NAME` says who wrote each line of a document; `built-on AGENT --since TOKEN` lists
what others built on an agent's work; `revert AGENT --since TOKEN` undoes an
agent's work as one guarded commit the hub decides, keeping everyone else's. These commands keep
history in their copy of the room; the hub keeps it unless it runs with `--no-history`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from crdtdoc.agent_cli import (
    Commands,
    add_write_options,
    connected_replica,
    print_result,
    simple_commands,
)

if TYPE_CHECKING:
    from crdtdoc.history import HistoryEntry


def _history(args: argparse.Namespace) -> int:
    with connected_replica(args, history=True) as r:
        r.artifacts_named([args.name])
        entries = r.history(args.name, limit=args.limit)
        print_result(args, r, _listed("history", entries, "no history"))
    return 0


def _listed(key: str, entries: list[HistoryEntry], none: str) -> dict[str, Any]:
    """History entries as a command prints them: lines, and JSON under `key`."""
    shown = [
        {
            "version": e.version,
            "agent": e.agent,
            "basis": e.basis,
            "changes": [{"kind": c.kind, "text": c.describe()} for c in e.changes],
        }
        for e in entries
    ]
    lines = [line for entry in entries for line in entry.describe().splitlines()]
    return {key: shown, "lines": lines or [none]}


def _count(text: str) -> int:
    """--limit: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the limit is 0 or more")
    return value


def _built_on(args: argparse.Namespace) -> int:
    from crdtdoc.built_on import record_notes
    from crdtdoc.errors import CrdtdocError

    with connected_replica(args, history=True) as r:
        failure = None
        try:
            provenance = r.provenance()
        except CrdtdocError as exc:
            provenance, failure = None, exc
        found = r.built_on(args.whose, since=args.since, until=args.until, provenance=provenance)
        shown = _listed("built_on", found, "nothing built on it")
        notes = record_notes(found, failure)
        shown["lines"] = notes + shown["lines"]
        shown["record"] = {"used": found.recorded, "unrecorded": found.unrecorded, "notes": notes}
        print_result(args, r, shown)
    return 0


def blame_document(args: argparse.Namespace) -> int:
    """`crdtdoc doc blame NAME [--at TOKEN] [--spans]`."""
    from crdtdoc.blame import by_line  # loaded when it runs, not for --help

    with connected_replica(args, history=True) as r:
        r.require(args.name, "document")
        doc = r.document(args.name)
        spans = doc.blame(at=args.at)
        lines = [s.describe() for s in spans] if args.spans else by_line(spans)
        shown = [
            {"start": s.start, "end": s.end, "text": s.text, "agent": s.agent, "version": s.version}
            for s in spans
        ]
        print_result(args, r, {"spans": shown, "lines": lines or ["(empty)"]})
    return 0


def _revert(args: argparse.Namespace) -> int:
    on = args.on or []
    note = args.note or f"revert {args.whose}'s work"
    with connected_replica(args, history=True) as r:
        r.artifacts_named(on)
        before = r.version().token()
        plan = r.plan_revert(args.whose, since=args.since, on=on)
        if plan.touched and not args.dry_run:
            with r.commit(args.expect, plan.touched, fence=args.fence):
                plan.apply(r, note)
        lines = [
            ("would revert: " if args.dry_run else "reverted: ") + line for line in plan.describe()
        ]
        if not args.dry_run and plan.touched:
            lines.append(f"undo with: crdtdoc revert {r.agent} --since {before}")
        shown = {
            "removed": plan.removed,
            "restored": plan.restored,
            "kept": plan.kept,
            "artifacts": plan.touched,
            "before": before,
            "dry_run": args.dry_run,
        }
        print_result(args, r, {**shown, "lines": lines})
    return 0


def add_commands(commands: Commands) -> None:
    command = simple_commands(commands)

    s = command(
        "history",
        "the steps that changed an artifact: who, what, and the version each led to",
        "The steps that changed an artifact, oldest first: who did what, and the version token "
        "each led to (read the artifact as it was then with `doc cat --at TOKEN`, `tasks list "
        "--at TOKEN`, `spec show --at TOKEN`), in a causal order every agent agrees on.",
        _history,
    )
    s.add_argument("name", help="a document, task list, spec or map")
    s.add_argument("--limit", type=_count, default=50, help="the last LIMIT steps (default 50)")
    s = command(
        "built-on",
        "the changes others made on top of an agent's work since a version",
        "The changes other agents made on top of AGENT's work since --since: what to check "
        "before reverting that work. Each says its basis: 'wrote on it' (written next to or "
        "inside the work, deleting it, or later than a change of theirs that did: exact, from "
        "the document) or 'had been sent it' (the hub recorded that its writer had been sent "
        "the work before writing: it may have read it; a change the hub recorded and that is "
        "not listed was made without the work). The hub records what each connection was "
        "sent; a count says how many changes its record does not cover. An entry's 'at' token "
        "is its place in history's causal order, which need not include the work even when "
        "its writer had been sent it.",
        _built_on,
    )
    s.add_argument("whose", metavar="AGENT", help="the agent whose work others built on")
    s.add_argument("--since", help="a version token from before the work (default: all of it)")
    s.add_argument(
        "--until",
        help="a version token: leave out the agent's work after it (with the tokens `history` "
        "lists before and after one change: what was built on that change)",
    )
    s = command(
        "revert",
        "undo an agent's work since a version, keeping everyone else's",
        "Undo what AGENT did since --since: what it wrote is taken out, what it deleted is "
        "written back, what others did meanwhile stays; parts others built on are kept and "
        "listed. One guarded commit the hub decides, by you, with a note; itself revertible.",
        _revert,
    )
    s.add_argument("whose", metavar="AGENT", help="the agent whose work to undo")
    s.add_argument(
        "--since",
        required=True,
        help="a version token from before the work (crdtdoc history or crdtdoc version)",
    )
    s.add_argument(
        "--on", action="append", metavar="NAME", help="only this artifact (repeat for several)"
    )
    s.add_argument("--note", help="why (shown in everyone's change feed)")
    s.add_argument(
        "--dry-run", action="store_true", help="only say what it would take out and put back"
    )
    add_write_options(s)


def add_blame_action(doc: Any, action: Any) -> None:
    """`doc blame` (added to `crdtdoc doc` by artifact_cli)."""
    s = action(doc, "blame", "who wrote each line of the document (and when: a version token)")
    s.add_argument("name")
    s.add_argument("--at", metavar="TOKEN", help="the document as it was at this version")
    s.add_argument("--spans", action="store_true", help="print each span, not each line")

"""The MCP server's tools for the room's past: history, reading an artifact as it was, blame,
and reverting an agent's work (`crdtdoc.mcp_server` registers them).

They answer in the words the command line uses (`crdtdoc history`, `doc blame`, `revert`): the
same `HistoryEntry.describe`, `blame.by_line` and revert plan, so an agent reading either sees
the same thing. A revert is planned first and written as one guarded commit the hub decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crdtdoc.blame import by_line
from crdtdoc.built_on import record_notes
from crdtdoc.errors import CrdtdocError, UsageError
from crdtdoc.mcp_resources import render

if TYPE_CHECKING:
    from crdtdoc.mcp_session import Session, ToolFn


def add_history_tools(
    tool: Callable[[str], Callable[[ToolFn], ToolFn]],
    session: Callable[[], Session],
    known: Callable[[Any, str, str], None],
) -> None:
    """Registers the tools with `tool` (the server's decorator)."""

    @tool(
        "The steps that changed an artifact (document, task list, spec), oldest first: who did "
        "what, each followed by 'at TOKEN', the version it led to (read_at shows the artifact "
        "then; revert_agent_work takes one as `since`). The last `limit` steps."
    )
    async def history(name: str, limit: int = 50) -> str:
        replica = session().replica
        kind = replica.artifacts().get(name, "document")
        known(replica, name, kind)
        entries = replica.history(name, limit=max(0, min(limit, 1000)))
        return "\n".join(e.describe() for e in entries) or "no history"

    @tool(
        "An artifact as it was at version token `at` (from history, or any version token): a "
        "document's text, a task list's tasks, a spec as JSON."
    )
    async def read_at(name: str, at: str) -> str:
        replica = session().replica
        kind = replica.artifacts().get(name)
        if kind is None:
            known(replica, name, "document")  # names the artifacts there are
        return render(replica.at(at), name, kind)

    @tool(
        "Who wrote each line of a document: 'agents | line', the agents in the order their "
        "text appears in the line. `at`: a version token, for the document as it was then."
    )
    async def blame_document(name: str, at: str | None = None) -> str:
        replica = session().replica
        known(replica, name, "document")
        return "\n".join(by_line(replica.document(name).blame(at=at))) or "(empty document)"

    @tool(
        "The changes other agents made on top of an agent's work since a version token, each "
        "followed by 'at TOKEN (basis)': what to check before reverting that work. 'wrote on "
        "it': written next to or inside the work, deleting it, or after a change of theirs "
        "that did (exact). 'had been sent it': the hub recorded that its writer had been sent "
        "the work before writing (it may have read it); a change the hub recorded and that is "
        "not listed was made without the work. `until`: leave out the agent's work after this "
        "token (with the tokens before and after one change in `history`: built on that change)."
    )
    async def built_on(agent: str, since: str | None = None, until: str | None = None) -> str:
        replica = session().replica
        failure = None
        try:
            provenance = await replica.provenance()
        except CrdtdocError as exc:
            provenance, failure = None, exc
        found = replica.built_on(agent, since=since, until=until, provenance=provenance)
        lines = [*record_notes(found, failure), *(e.describe() for e in found)]
        return "\n".join(lines) or "nothing built on it"

    @tool(
        "Undo an agent's work since a version token: what it wrote is taken out, what it "
        "deleted is written back, what others did meanwhile stays; parts others built on are "
        "kept and listed. Written by you, with `note` in everyone's change feed, as one commit "
        "the hub decides; itself revertible (the answer says how). `artifacts`: only these "
        "(comma-separated names). `dry_run`: only say what it would do."
    )
    async def revert_agent_work(
        agent: str,
        since: str,
        artifacts: str | None = None,
        note: str | None = None,
        dry_run: bool = False,
    ) -> str:
        s = session()
        on = [a.strip() for a in (artifacts or "").split(",") if a.strip()]
        if note is not None and not note.strip():
            raise UsageError("a note says why, in a few words; leave it out otherwise")
        before = s.replica.version().token()
        plan = s.replica.plan_revert(agent, since=since, on=on)
        if dry_run or not plan.touched:
            return "\n".join(f"would revert: {line}" for line in plan.describe())
        async with s.replica.commit(on=plan.touched):
            plan.apply(s.replica, note)
        done = await s.written(f"reverted {agent}'s work")
        undo = f"undo with revert_agent_work(agent={s.replica.agent!r}, since={before!r})"
        return "\n".join([done, *plan.describe(), undo])

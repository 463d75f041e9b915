"""`crdtdoc mcp`: an MCP server (stdio) through which an MCP-capable agent works on one room as
itself.

The server holds one connected replica for the whole session, so reads are local and instant and
the agent's writes merge with everyone else's. Every write waits until the hub stored it durably
and answers with the new version token; a refusal (already claimed, stale read, frozen spec,
conflicting values...) comes back as a tool error whose text says what happened and what to do.
`changes_since_last_look` reports, in plain sentences, what others did since the agent last asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from crdtdoc import __version__
from crdtdoc.artifacts.spec import InterfaceSpec
from crdtdoc.client.connection import Keep, connect, room_urls
from crdtdoc.errors import CrdtdocError, StaleRead, SyncTimeout, UsageError
from crdtdoc.mcp_history import add_history_tools
from crdtdoc.mcp_resources import ChangeAnnouncer, Subscribers, add_resources
from crdtdoc.mcp_session import Session, ToolFn, known
from crdtdoc.textmodel import EMBED
from crdtdoc.tokens import check_token_agent

log = logging.getLogger("crdtdoc.mcp")


FENCE = (
    " Pass `fence` (the name of a lease you took with acquire_lease) to have the hub refuse "
    "the write once that lease is no longer yours."
)
CLAIM_TTL = 60.0
"""Seconds a claim outlives this server if it dies (while it lives, its lease renews itself)."""


def build_server(
    hub: str, room: str, agent: str, token: str | None, write_timeout: float = 30.0
) -> Any:
    """The MCP server (tools bound to one room); run it with `run_stdio_async()`. A write
    answers once the hub stored it, or after `write_timeout` seconds saying it is kept."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.subscriptions import InMemorySubscriptionBus

    state: dict[str, Session] = {}
    bus = InMemorySubscriptionBus()  # resource updates, for subscriptions/listen streams
    subscribers = Subscribers()  # and for sessions that subscribed the older way

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        urls = room_urls(hub, room)
        # Starts without the hub, as a replica works offline; the answers say so. A hub that
        # answers gets up to `write_timeout` to sync first, so the first reads are not empty.
        # Keeping history: the agent may read the past, blame and revert (crdtdoc.mcp_history).
        session_replica = connect(urls, agent=agent, token=token, wait_synced=False, history=True)
        async with session_replica as replica:
            with contextlib.suppress(SyncTimeout):
                await replica._wait_until(replica._opened, write_timeout, "no sync")
            state["session"] = Session(replica, write_timeout)
            announcer = ChangeAnnouncer(replica, bus, subscribers)
            try:
                yield
            finally:
                announcer.stop()

    server = MCPServer(
        name="crdtdoc",
        version=__version__,
        instructions=(
            f"Shared artifacts of room {room!r}, as agent {agent!r}. Documents, task lists and "
            "interface specs merge with other agents' concurrent work; writes return a version "
            "token once durable. Call changes_since_last_look to see what others did."
        ),
        lifespan=lifespan,
        subscriptions=bus,
    )
    add_resources(server, lambda: session().replica)
    subscribers.register(server)

    def session() -> Session:
        return state["session"]

    def tool(description: str) -> Callable[[ToolFn], ToolFn]:
        """`server.tool`, with crdtdoc's errors passed to the agent as readable tool errors
        ("AlreadyClaimed: task ... is claimed by alice; pick another task...")."""

        def register(fn: ToolFn) -> ToolFn:
            @functools.wraps(fn)
            async def wrapped(*args: Any, **kwargs: Any) -> str:
                replica = session().replica
                try:
                    if replica.admission is not None:  # the hub will not let this agent in
                        raise replica.admission
                    answer = await fn(*args, **kwargs)
                except CrdtdocError as exc:
                    raise ToolError(f"{type(exc).__name__}: {exc}") from None
                except ToolError:
                    raise
                except Exception:  # a bug: logged whole, and the agent told plainly
                    log.exception("tool failed", extra={"tool": fn.__name__})
                    raise ToolError(
                        f"{fn.__name__} failed inside crdtdoc (a bug, logged by the server); "
                        "nothing more is known about whether it took effect"
                    ) from None
                if not replica.synced:
                    answer += (
                        f"\n(offline: the hub at {replica.url} is not answering "
                        f"({replica.last_error or 'connecting'}); this is what this session "
                        "holds, and its changes are sent when the hub answers)"
                    )
                return answer

            server.tool(description=description)(wrapped)
            return fn

        return register

    @tool(
        "The full text of a shared document. Each embed (an image, an embedded object) shows "
        "as U+FFFC; keep it where it is when you write the text back, or drop it to delete it."
    )
    async def read_document(name: str) -> str:
        s = session()
        known(s.replica, name, "document")
        text = s.last_read[name] = s.replica.document(name).read()
        return text

    @tool(
        "A shared document as Quill-style delta operations: text runs with their formatting "
        "attributes, and embeds, as JSON."
    )
    async def read_document_delta(name: str) -> str:
        replica = session().replica
        known(replica, name, "document")
        return json.dumps(replica.document(name).delta(), ensure_ascii=False)

    @tool(
        "Make a document read `text`: your changes to the text you last read with "
        "read_document are applied as small edits, so what others changed since (elsewhere in "
        "it) survives; if they changed the same place, nothing is written and you are asked to "
        "read again. Keep each U+FFFC where it was: dropping one deletes that image." + FENCE
    )
    async def write_document(name: str, text: str, fence: str | None = None) -> str:
        s = session()
        doc = s.replica.document(name)
        before = doc.read().count(EMBED)
        if name not in s.last_read and doc.read():
            raise StaleRead(
                f"read {name} with read_document first: write_document applies your changes to "
                "the text you last read, and you have not read this one (nothing was written)",
                [],
            )
        async with s.writing(fence):
            doc.write(text, base=s.last_read.get(name))
        s.last_read[name] = text  # what the agent now knows (others' changes it has not read)
        dropped = before - doc.read().count(EMBED)
        embeds = f"; deleted {dropped} embed(s) (images)" if dropped > 0 else ""
        return await s.written(f"wrote {name} ({len(text)} characters{embeds})")

    @tool("Replace one unique occurrence of `old` with `new` in a document." + FENCE)
    async def edit_document(name: str, old: str, new: str, fence: str | None = None) -> str:
        s = session()
        async with s.writing(fence):
            s.replica.document(name).replace(old, new)
        seen = s.last_read.pop(name, None)
        if seen is not None and seen.count(old) == 1:  # the agent knows its own edit
            s.last_read[name] = seen.replace(old, new)
        return await s.written(f"replaced in {name}")

    @tool("Add `text` at the end of a document (others' concurrent additions are kept)." + FENCE)
    async def append_document(name: str, text: str, fence: str | None = None) -> str:
        s = session()
        async with s.writing(fence):
            s.replica.document(name).append(text)
        seen = s.last_read.pop(name, None)
        if seen is not None and s.replica.document(name).read() == seen + text:
            s.last_read[name] = seen + text  # nobody else wrote: the agent knows the text
        return await s.written(f"appended {len(text)} characters to {name}")

    @tool(
        "Tasks of a task list, one per line: [status by whom] id: title. `status`: open, "
        "claimed or done."
    )
    async def list_tasks(name: str, status: str | None = None) -> str:
        replica = session().replica
        known(replica, name, "tasks")
        tasks = replica.tasks(name).list(status=status)
        return "\n".join(t.describe() for t in tasks) or "no tasks"

    @tool(
        "Add a task; answers 'added task ID' with the version that holds it. `verify`: how "
        "many agents other than whoever completes it must verify it before it counts as done."
        + FENCE
    )
    async def add_task(
        name: str, title: str, description: str = "", verify: int = 0, fence: str | None = None
    ) -> str:
        s = session()
        async with s.writing(fence):
            task_id = s.replica.tasks(name).add(title, description, verify=verify)
        return await s.written(f"added task {task_id}")

    @tool("Verify a task another agent completed (one added with `verify` counts once verified).")
    async def verify_task(name: str, task_id: str) -> str:
        s = session()
        async with s.writing():
            s.replica.tasks(name).verify(task_id)
        return await s.written(s.replica.tasks(name).get(task_id).describe())

    @tool(
        "Claim a task, exclusively: the hub decides, so of agents racing for it exactly one "
        "gets it; the others get an error naming the holder (pick another task). The claim "
        "holds until you complete or release the task, or this session ends."
    )
    async def claim_task(name: str, task_id: str) -> str:
        s = session()
        held = s.claims.get((name, task_id))
        if held is not None and held.held:
            return await s.written(f"{task_id} is already yours")
        s.claims[(name, task_id)] = await s.replica.claim_task(name, task_id, ttl=CLAIM_TTL)
        return await s.written(f"claimed {task_id}; it is yours alone")

    @tool("Give up your claim on a task.")
    async def release_task(name: str, task_id: str) -> str:
        s = session()
        if not await s.unclaim(name, task_id):
            async with s.writing():
                s.replica.tasks(name).release(task_id, strict=True)
        return await s.written(f"released {task_id}")

    @tool("Mark a task done, optionally with a note (your claim on it ends).")
    async def complete_task(name: str, task_id: str, note: str | None = None) -> str:
        s = session()
        async with s.writing():
            s.replica.tasks(name).complete(task_id, note)
        await s.unclaim(name, task_id)
        return await s.written(f"completed {task_id}")

    @tool(
        "One task whole, as JSON: title, description, status, who holds or claims it, who "
        "completed it, its notes, labels and dependencies."
    )
    async def show_task(name: str, task_id: str) -> str:
        task = session().replica.tasks(name).get(task_id)
        return json.dumps(task.to_json(), ensure_ascii=False)

    @tool("Open tasks whose dependencies are all done: what can be started now.")
    async def ready_tasks(name: str) -> str:
        replica = session().replica
        known(replica, name, "tasks")
        tasks = replica.tasks(name).ready()
        return "\n".join(t.describe() for t in tasks) or "no ready tasks"

    @tool("Make a done task open again (its completions and claims are removed).")
    async def reopen_task(name: str, task_id: str) -> str:
        s = session()
        async with s.writing():
            s.replica.tasks(name).reopen(task_id)
        await s.unclaim(name, task_id)  # reopening removes every claim, ours included
        return await s.written(f"reopened {task_id}")

    @tool(
        "The next number of a sequence, decided and recorded by the hub: strictly increasing "
        "and never handed out twice (migration numbers, ticket numbers)."
    )
    async def next_number(sequence: str) -> str:
        return str(await session().replica.next_number(sequence))

    @tool(
        "Take an exclusive lease (a deploy, a migration, a file) through the hub: of agents "
        "racing for it exactly one gets it, with a fencing token; others get an error naming "
        "the holder, or wait up to `wait` seconds in a fair queue. It renews itself while this "
        "session lives and lasts `ttl` seconds after that. Pass its name as `fence` to writes."
    )
    async def acquire_lease(name: str, ttl: float = 60.0, wait: float = 0.0) -> str:
        s = session()
        held = s.leases.get(name)
        if held is not None and held.held:
            return f"lease {name} is already yours; fencing token {held.token}"
        lease = await s.replica.acquire(name, ttl=ttl, wait=max(0.0, min(wait, 300.0)))
        s.leases[name] = lease
        return f"acquired lease {name}; fencing token {lease.token}; it is yours alone"

    @tool("Give a lease back (one you took with acquire_lease).")
    async def release_lease(name: str) -> str:
        s = session()
        lease = s.leases.pop(name, None)
        if lease is None:
            raise UsageError(f"this session holds no lease {name!r}")
        await lease.release()
        return f"released lease {name}"

    @tool("Every lease held in the room, as JSON: who holds it, time left, who waits for it.")
    async def list_leases() -> str:
        leases = await session().replica.leases()
        return json.dumps([dataclasses.asdict(lease) for lease in leases], ensure_ascii=False)

    @tool(
        "Tell the other agents what you are doing: a short status, and optionally the task "
        "you work on (task='' clears it). Shown by list_peers and `crdtdoc peers`."
    )
    async def set_status(status: str, task: str | None = None) -> str:
        s = session()
        s.replica.set_presence(status, Keep.KEEP if task is None else (task or None))
        return f"status set to {status!r}" + (f" on {task}" if task else "")

    @tool(
        "Who else is in the room now, as JSON: agent, status, task, and `until` (Unix time) "
        "for a status an agent left with `crdtdoc status`."
    )
    async def list_peers() -> str:
        peers = session().replica.peers()
        shown = [
            {"agent": p.agent, "status": p.status, "task": p.task, "until": p.until} for p in peers
        ]
        return json.dumps(shown, ensure_ascii=False)

    @tool("The room's artifacts (documents, task lists, specs, maps) and their kinds, as JSON.")
    async def list_artifacts() -> str:
        return json.dumps(session().replica.artifacts(), ensure_ascii=False)

    @tool("Add a note to a task (notes are never lost or overwritten).")
    async def note_task(name: str, task_id: str, text: str) -> str:
        s = session()
        async with s.writing():
            s.replica.tasks(name).note(task_id, text)
        return await s.written(f"noted on {task_id}")

    @tool(
        "An interface spec as JSON: every member's value, and members whose "
        "concurrent values conflict (with who wrote each)."
    )
    async def read_spec(name: str) -> str:
        replica = session().replica
        known(replica, name, "spec")
        return json.dumps(replica.spec(name).summary(), ensure_ascii=False)

    @tool(
        "Set a spec member to a JSON value (`value_json`, e.g. '\"str\"' or "
        "'42'). Use it to resolve a conflict too." + FENCE
    )
    async def set_spec_member(
        name: str, member: str, value_json: str, fence: str | None = None
    ) -> str:
        s = session()
        try:
            value = json.loads(value_json)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"value_json is not JSON ({exc}); quote strings: '\"text\"'") from None
        async with s.writing(fence):
            s.replica.spec(name).set(member, value)
        return await s.written(f"set {name}.{member}")

    @tool(
        "Freeze a spec: later changes to it are refused (agree on an interface, then freeze). "
        "With `approvers` (comma-separated agents who must all approve) or `quorum` (approvals "
        "needed from agents other than you), the freeze is proposed and takes effect once they "
        "approve_spec_freeze."
    )
    async def freeze_spec(name: str, approvers: str | None = None, quorum: int = 0) -> str:
        s = session()
        named = [a.strip() for a in (approvers or "").split(",") if a.strip()]
        async with s.writing():
            s.replica.spec(name).freeze(named, quorum)
        return await s.written(_freeze_state(s.replica.spec(name)))

    @tool("Approve the freeze proposed for a spec.")
    async def approve_spec_freeze(name: str) -> str:
        s = session()
        async with s.writing():
            s.replica.spec(name).approve()
        return await s.written(_freeze_state(s.replica.spec(name)))

    add_history_tools(tool, session, known)

    @tool("The version token of everything this agent has seen now.")
    async def version() -> str:
        return session().replica.version().token()

    @tool("Wait until this agent has everything in a version token.")
    async def wait_for(token: str, timeout: float = 30.0) -> str:
        await session().replica.wait_for(token, timeout=timeout)
        return f"up to date with {token}"

    @tool(
        "Wait (up to `timeout` seconds) until another agent changes something in the room (in "
        "`artifacts`, comma-separated names, if given), then say what changed since you last "
        "looked; instead of polling. Artifacts are also MCP resources you can subscribe to."
    )
    async def wait_for_change(timeout: float = 60.0, artifacts: str | None = None) -> str:
        s = session()
        wanted = {a.strip() for a in (artifacts or "").split(",") if a.strip()}

        def changed() -> bool:
            return any(not wanted or c.artifact in wanted for c in s.others_since_last_look())

        with contextlib.suppress(SyncTimeout):
            await s.replica._wait_until(changed, max(0.0, min(timeout, 3600.0)), "")
        return await changes_since_last_look()

    @tool("What others changed since you last asked, one sentence each.")
    async def changes_since_last_look() -> str:
        s = session()
        changes = s.others_since_last_look()
        s.last_look = s.replica.version()
        return "\n".join(c.describe() for c in changes) or "nothing changed"

    return server


def _freeze_state(spec: InterfaceSpec) -> str:
    if spec.frozen:
        return f"{spec.name} is frozen"
    proposed = spec.summary().get("freeze_proposed")
    missing = proposed.get("missing") if isinstance(proposed, dict) else None
    return f"the freeze of {spec.name} waits for: {', '.join(missing or [])}"


async def serve_mcp(
    hub: str | None,
    room: str | None,
    agent: str | None,
    token: str | None,
    write_timeout: float = 30.0,
) -> None:
    hub = hub or os.environ.get("CRDTDOC_HUB")
    room = room or os.environ.get("CRDTDOC_ROOM")
    agent = agent or os.environ.get("CRDTDOC_AGENT")
    token = token or os.environ.get("CRDTDOC_TOKEN")
    if not hub or not room or not agent:
        raise UsageError("crdtdoc mcp needs --hub, --room and --agent (or CRDTDOC_HUB, ...)")
    check_token_agent(token, agent)
    await build_server(hub, room, agent, token, write_timeout).run_stdio_async()

"""`crdtdoc mcp` end to end: two MCP sessions (the SDK's own client over stdio) as two agents on
a real hub process, editing concurrently; nothing is lost, refusals come back as tool errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import crdtdoc
from tests.support.aio import run
from tests.support.hubs import HubProcess


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    process = HubProcess(tmp_path / "hub.db")
    url = process.start()
    try:
        yield url
    finally:
        process.stop()


@asynccontextmanager
async def agent_session(
    hub: str, agent: str, *options: str, message_handler: Any = None
) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "crdtdoc.cli", "mcp", *options],
        env=dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM="mcp", CRDTDOC_AGENT=agent),
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=message_handler) as session,
    ):
        initialized = await session.initialize()
        assert initialized.server_info.version == crdtdoc.__version__  # was ''
        yield session


async def call(session: Any, tool: str, **arguments: Any) -> tuple[bool, str]:
    """(is_error, text) of one tool call."""
    result = await session.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    return bool(result.is_error), text


def test_two_agents_over_mcp_edit_concurrently_and_lose_nothing(hub: str) -> None:
    async def body() -> None:
        async with agent_session(hub, "alice") as alice, agent_session(hub, "bob") as bob:
            names = {t.name for t in (await alice.list_tools()).tools}
            assert {
                "read_document",
                "write_document",
                "claim_task",
                "read_spec",
                "changes_since_last_look",
                "wait_for",
                "version",
            } <= names
            error, text = await call(
                alice, "write_document", name="design", text="# Design\nids are UUIDs\n"
            )
            assert not error and "version" in text
            token = text.rsplit("version ", 1)[1]
            error, _ = await call(bob, "wait_for", token=token)
            assert not error
            # Concurrent edits to different lines, and both add a task: all survive.
            results = await asyncio.gather(
                call(alice, "edit_document", name="design", old="# Design", new="# Design v2"),
                call(bob, "edit_document", name="design", old="UUIDs", new="integers"),
                call(alice, "add_task", name="backlog", title="schema"),
                call(bob, "add_task", name="backlog", title="migration"),
            )
            assert not any(error for error, _ in results), results
            for session in (alice, bob):
                for _, text in results:
                    await call(session, "wait_for", token=text.rsplit("version ", 1)[1])
            for session in (alice, bob):
                _, text = await call(session, "read_document", name="design")
                assert text == "# Design v2\nids are integers\n"
                _, delta = await call(session, "read_document_delta", name="design")
                assert json.loads(delta) == [{"insert": "# Design v2\nids are integers\n"}]
                _, tasks = await call(session, "list_tasks", name="backlog")
                assert "schema" in tasks and "migration" in tasks
            # alice writes back the text she read; bob's edit made since survives.
            _, seen = await call(alice, "read_document", name="design")
            _, text = await call(bob, "edit_document", name="design", old="# Design v2", new="# D3")
            await call(alice, "wait_for", token=text.rsplit("version ", 1)[1])
            error, text = await call(alice, "write_document", name="design", text=seen + "end\n")
            assert not error, text
            _, now = await call(alice, "read_document", name="design")
            assert now == "# D3\nids are integers\nend\n"
            # bob waits for the next change; alice's edit wakes him with it.
            waiting = asyncio.ensure_future(call(bob, "wait_for_change", timeout=30))
            await asyncio.sleep(0.5)
            await call(alice, "edit_document", name="design", old="integers", new="ints")
            error, woke = await waiting
            assert not error and "alice" in woke, woke
            await call(alice, "edit_document", name="design", old="ints", new="integers")
            # Her next writes build on what she knows: her own edit and write, not bob's line
            # she has not read (kept), nor her edit applied twice.
            _, text = await call(bob, "edit_document", name="design", old="end", new="end\nbob")
            await call(alice, "wait_for", token=text.rsplit("version ", 1)[1])
            await call(alice, "edit_document", name="design", old="# D3", new="# D4")
            mine = "# D4\nids are integers\nend\nalice\n"
            error, text = await call(alice, "write_document", name="design", text=mine)
            assert not error, text
            _, now = await call(alice, "read_document", name="design")
            assert now == "# D4\nids are integers\nend\nbob\nalice\n", now
            # A claim race: one wins, the other gets a readable tool error.
            _, tasks = await call(alice, "list_tasks", name="backlog")
            error, text = await call(alice, "claim_task", name="backlog", task_id=_id(tasks))
            assert not error, text
            await call(bob, "wait_for", token=text.rsplit("version ", 1)[1])
            error, text = await call(bob, "claim_task", name="backlog", task_id=_id(tasks))
            assert error and "claimed by alice" in text
            # Specs: a bad value is explained; conflicts are visible as JSON.
            error, text = await call(
                bob, "set_spec_member", name="api", member="User.id", value_json="not json"
            )
            assert error and "JSON" in text
            await call(bob, "set_spec_member", name="api", member="User.id", value_json='"UUID"')
            await call(alice, "wait_for", token=(await call(bob, "version"))[1])
            _, spec = await call(alice, "read_spec", name="api")
            assert json.loads(spec)["members"] == {"User.id": "UUID"}
            # What changed since alice last looked: bob's work, once.
            _, changes = await call(alice, "changes_since_last_look")
            assert "bob" in changes and "User.id" in changes, changes
            _, again = await call(alice, "changes_since_last_look")
            assert again == "nothing changed"

    run(body(), timeout=120)


def _id(listing: str) -> str:
    """The id of the "schema" task in a `list_tasks` answer ("[open] t...: schema")."""
    match = re.search(r"\b(t[0-9a-f]{15})\b: schema", listing)
    if match is None:
        raise AssertionError(f"no schema task in {listing!r}")
    return match.group(1)


def test_twenty_claim_races_over_mcp_each_have_exactly_one_winner(hub: str) -> None:
    """Two MCP sessions claim the same task at the same moment, 20 times: the hub decides, so
    exactly one is told "claimed" and the other gets an error naming the winner; completing
    a task ends the claim, and a released task can be claimed by the other."""

    async def body() -> None:
        async with agent_session(hub, "alice") as alice, agent_session(hub, "bob") as bob:
            ids = []
            for n in range(20):
                _, text = await call(alice, "add_task", name="races", title=f"task {n}")
                ids.append(re.search(r"added task (\S+);", text).group(1))  # type: ignore[union-attr]
            await call(bob, "wait_for", token=text.rsplit("version ", 1)[1])
            winners = []
            for task_id in ids:
                (a_err, a_text), (b_err, b_text) = await asyncio.gather(
                    call(alice, "claim_task", name="races", task_id=task_id),
                    call(bob, "claim_task", name="races", task_id=task_id),
                )
                assert a_err != b_err, (a_text, b_text)  # exactly one winner
                winner, loser_text = ("alice", b_text) if not a_err else ("bob", a_text)
                assert f"claimed by {winner}" in loser_text, loser_text
                winners.append(winner)
            # The winner releases one; then the other may claim it.
            first = ids[0]
            holder, other = (alice, bob) if winners[0] == "alice" else (bob, alice)
            error, text = await call(holder, "release_task", name="races", task_id=first)
            assert not error, text
            error, text = await call(other, "claim_task", name="races", task_id=first)
            assert not error, text
            error, text = await call(other, "complete_task", name="races", task_id=first)
            assert not error, text

    run(body(), timeout=180)


def test_a_write_the_hub_has_not_confirmed_says_it_is_kept(tmp_path: Path) -> None:
    """The hub goes away mid-session: add_task answers (after --write-timeout) that the task is
    kept and will be sent, so the agent does not add it twice."""
    process = HubProcess(tmp_path / "hub.db")
    url = process.start()

    async def body() -> None:
        async with agent_session(url, "alice", "--write-timeout", "2") as alice:
            await call(alice, "add_task", name="backlog", title="before")
            process.stop()
            error, text = await call(alice, "add_task", name="backlog", title="during")
            assert not error and "NOT yet confirmed" in text and "do not repeat it" in text
            _, tasks = await call(alice, "list_tasks", name="backlog")
            assert tasks.count("during") == 1, tasks  # kept here, once

    run(body(), timeout=120)


def test_the_server_starts_without_the_hub_and_says_it_is_offline(tmp_path: Path) -> None:
    """A replica works offline, so the MCP server starts while the hub is down (it used to die
    with a traceback): answers come from the session and say the hub is not answering."""
    process = HubProcess(tmp_path / "hub.db")
    url = process.start()
    process.stop()  # nothing listens there now

    async def body() -> None:
        async with agent_session(url, "alice", "--write-timeout", "1") as alice:
            error, text = await call(alice, "list_tasks", name="backlog")
            assert not error and "offline" in text and "no tasks" in text, text

    run(body(), timeout=60)


def test_numbers_artifacts_whole_tasks_and_freezing(hub: str) -> None:
    async def body() -> None:
        async with agent_session(hub, "alice") as alice:
            first = int((await call(alice, "next_number", sequence="migrations"))[1])
            second = int((await call(alice, "next_number", sequence="migrations"))[1])
            assert second > first
            _, text = await call(alice, "add_task", name="board", title="first")
            task_id = re.search(r"added task (\S+);", text).group(1)  # type: ignore[union-attr]
            await call(alice, "note_task", name="board", task_id=task_id, text="halfway")
            await call(alice, "complete_task", name="board", task_id=task_id)
            shown = json.loads((await call(alice, "show_task", name="board", task_id=task_id))[1])
            assert shown["completed_by"] == ["alice"] and shown["notes"][0]["text"] == "halfway"
            assert (await call(alice, "ready_tasks", name="board"))[1] == "no ready tasks"
            await call(alice, "reopen_task", name="board", task_id=task_id)
            assert task_id in (await call(alice, "ready_tasks", name="board"))[1]
            await call(alice, "set_spec_member", name="api", member="ping", value_json='"()"')
            error, _ = await call(alice, "freeze_spec", name="api")
            assert not error
            error, text = await call(
                alice, "set_spec_member", name="api", member="ping", value_json='"(x)"'
            )
            assert error and "Frozen" in text, text
            kinds = json.loads((await call(alice, "list_artifacts"))[1])
            assert kinds == {"board": "tasks", "api": "spec"}
            _, quiet = await call(alice, "wait_for_change", timeout=0.5)
            assert quiet == "nothing changed"

    run(body(), timeout=120)


def test_leases_fence_writes_and_presence_over_mcp(hub: str) -> None:
    """alice takes the deploy lease and writes under it; bob is told she holds it, then waits
    for it in the queue and gets it when she gives it back; a write fenced with a lease the
    session does not hold is refused and writes nothing; status shows in list_peers."""

    async def body() -> None:
        async with agent_session(hub, "alice") as alice, agent_session(hub, "bob") as bob:
            error, text = await call(alice, "acquire_lease", name="deploy", ttl=30)
            assert not error and "fencing token" in text, text
            error, text = await call(
                alice, "append_document", name="log", text="a1\n", fence="deploy"
            )
            assert not error, text
            error, text = await call(bob, "acquire_lease", name="deploy")
            assert error and "held by alice" in text, text
            error, text = await call(
                bob, "append_document", name="log", text="b0\n", fence="deploy"
            )
            assert error and "FencedOut" in text and "acquire_lease" in text, text
            leases = json.loads((await call(bob, "list_leases"))[1])
            assert [(e["name"], e["holder"]) for e in leases] == [("deploy", "alice")]
            waiting = asyncio.ensure_future(call(bob, "acquire_lease", name="deploy", wait=20))
            await asyncio.sleep(0.5)
            error, text = await call(alice, "release_lease", name="deploy")
            assert not error, text
            error, text = await waiting
            assert not error and "acquired" in text, text
            error, text = await call(
                bob, "append_document", name="log", text="b1\n", fence="deploy"
            )
            assert not error, text
            await call(alice, "wait_for", token=text.rsplit("version ", 1)[1])
            assert (await call(alice, "read_document", name="log"))[1] == "a1\nb1\n"
            error, text = await call(alice, "set_status", status="reviewing", task="t1")
            assert not error, text
            error, text = await call(alice, "set_status", status="x" * 201)
            assert error and "at most 200" in text, text
            deep = "[" * 5000 + "]" * 5000  # crashed the tool with a RecursionError
            error, text = await call(
                alice, "set_spec_member", name="s", member="m", value_json=deep
            )
            assert error and "not JSON" in text, text
            for _ in range(50):
                peers = json.loads((await call(bob, "list_peers"))[1])
                if any(p["status"] == "reviewing" for p in peers):
                    break
                await asyncio.sleep(0.1)
            assert {"agent": "alice", "status": "reviewing", "task": "t1", "until": None} in peers

    run(body(), timeout=120)


def test_a_write_too_large_for_the_hub_is_refused_at_once_over_mcp(hub: str) -> None:
    async def body() -> None:
        async with agent_session(hub, "alice") as alice:
            error, text = await call(alice, "write_document", name="big", text="x" * 1_300_000)
            assert error and "TooLarge" in text and "nothing was written" in text, text[:300]
            error, text = await call(alice, "read_document", name="big")
            assert error and "no document named 'big'" in text, text  # nothing was written

    run(body(), timeout=60)


def test_mcp_answers_do_not_mislead_an_agent(hub: str) -> None:
    """A cold write_document replaced everyone's text; release_task on another's claim said
    "released"; reads of a mistyped name answered empty; a write the hub did not confirm came
    back as an error, inviting a retry."""

    async def body() -> None:
        async with agent_session(hub, "mia") as mia, agent_session(hub, "max") as max_:
            await call(mia, "write_document", name="notes", text="mia's notes\n")
            _, text = await call(mia, "add_task", name="board", title="ship")
            task_id = re.search(r"added task (\S+);", text).group(1)  # type: ignore[union-attr]
            await call(mia, "claim_task", name="board", task_id=task_id)
            await call(max_, "wait_for", token=text.rsplit("version ", 1)[1])
            error, text = await call(max_, "write_document", name="notes", text="max only\n")
            assert error and "read_document first" in text, text
            assert (await call(max_, "read_document", name="notes"))[1] == "mia's notes\n"
            error, text = await call(max_, "release_task", name="board", task_id=task_id)
            assert error and "claimed by mia" in text, text
            for tool, args in (
                ("read_document", {"name": "nots"}),
                ("read_spec", {"name": "nospec"}),
                ("list_tasks", {"name": "bord"}),
            ):
                error, text = await call(max_, tool, **args)
                assert error and "NotFound" in text, (tool, text)

    run(body(), timeout=120)


def test_review_gates_over_mcp(hub: str) -> None:
    async def body() -> None:
        async with agent_session(hub, "alice") as alice, agent_session(hub, "bob") as bob:
            failed, added = await call(alice, "add_task", name="gated", title="ship it", verify=1)
            assert not failed
            task_id = added.split()[2].rstrip(";")
            _, token = await call(alice, "version")
            await call(bob, "wait_for", token=token)
            assert not (await call(alice, "complete_task", name="gated", task_id=task_id))[0]
            failed, why = await call(alice, "verify_task", name="gated", task_id=task_id)
            assert failed and "another agent must verify" in why
            _, token = await call(alice, "version")
            await call(bob, "wait_for", token=token)
            failed, said = await call(bob, "verify_task", name="gated", task_id=task_id)
            assert not failed and said.startswith("[done by alice]"), said

            await call(alice, "set_spec_member", name="api", member="get", value_json='"x"')
            failed, said = await call(alice, "freeze_spec", name="api", approvers="bob")
            assert not failed and "waits for: approval by bob" in said
            _, token = await call(alice, "version")
            await call(bob, "wait_for", token=token)
            failed, said = await call(bob, "approve_spec_freeze", name="api")
            assert not failed and "api is frozen" in said

    run(body())

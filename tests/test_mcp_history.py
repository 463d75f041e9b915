"""`crdtdoc.mcp_history` end to end: MCP sessions (the SDK's client over stdio) on a real hub
process read an artifact's history, read it as it was, blame it, and revert an agent's work,
which every session then sees."""

from __future__ import annotations

import re

from tests.support.aio import run
from tests.test_mcp_server import agent_session, call, hub  # noqa: F401 (hub: a fixture)


def test_history_read_at_blame_and_revert_over_mcp(hub: str) -> None:  # noqa: F811
    async def body() -> None:
        async with agent_session(hub, "alice") as alice, agent_session(hub, "bob") as bob:
            text = "The API returns JSON.\nRetry up to 3 times.\n"
            assert not (await call(alice, "write_document", name="design", text=text))[0]
            assert not (await call(bob, "wait_for", token=(await call(alice, "version"))[1]))[0]
            _, before = await call(bob, "version")
            failed, _ = await call(
                bob,
                "edit_document",
                name="design",
                old="Retry up to 3 times.",
                new="Errors are retried forever.",
            )
            assert not failed
            _, now = await call(bob, "version")
            await call(alice, "wait_for", token=now)

            failed, listed = await call(alice, "history", name="design")
            assert not failed and "bob deleted 'Retry up to 3 times'" in listed, listed
            first = re.findall(r"  at (\S+)", listed)[0]
            assert (await call(alice, "read_at", name="design", at=first))[1] == text
            failed, blamed = await call(alice, "blame_document", name="design")
            assert not failed and blamed.splitlines()[0].startswith("alice")
            assert "bob" in blamed.splitlines()[1]

            failed, built = await call(alice, "built_on", agent="alice")
            assert not failed and "bob inserted 'Errors are retried forever'" in built, built
            assert "(wrote on it)" in built and "not available" not in built, built
            failed, preview = await call(
                alice, "revert_agent_work", agent="bob", since=before, dry_run=True
            )
            assert not failed and preview.startswith("would revert: design: take out")
            assert "Errors" in (await call(alice, "read_document", name="design"))[1]
            failed, done = await call(
                alice, "revert_agent_work", agent="bob", since=before, note="not verified"
            )
            assert not failed and "undo with revert_agent_work(agent='alice'" in done, done
            assert (await call(alice, "read_document", name="design"))[1] == text
            _, after = await call(alice, "version")
            await call(bob, "wait_for", token=after)
            assert (await call(bob, "read_document", name="design"))[1] == text
            _, feed = await call(bob, "changes_since_last_look")
            assert "alice noted 'not verified'" in feed, feed

            failed, why = await call(alice, "revert_agent_work", agent="nobody", since=before)
            assert failed and "no agent named 'nobody'" in why
            failed, why = await call(alice, "read_at", name="design", at="nonsense!")
            assert failed and "version token" in why

    run(body())

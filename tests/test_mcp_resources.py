"""`crdtdoc.mcp_resources` end to end: artifacts as MCP resources, and a subscription
(`resources/subscribe`) that tells an agent's session when another agent changed an artifact it
subscribed to (and not when another artifact changed); `wait_for_change` filtered to the
artifacts it names."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.aio import run
from tests.test_mcp_server import agent_session, call, hub  # noqa: F401 (hub: a fixture)


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")  # most clients' way
def test_an_agent_subscribed_to_an_artifact_hears_of_others_changes(hub: str) -> None:  # noqa: F811
    async def body() -> None:
        heard: asyncio.Queue[str] = asyncio.Queue()

        async def on_message(message: object) -> None:
            params = getattr(getattr(message, "root", message), "params", None)
            uri = getattr(params, "uri", None)
            if uri is not None:
                heard.put_nowait(str(uri))

        alice_session = agent_session(hub, "alice", message_handler=on_message)
        async with alice_session as alice, agent_session(hub, "bob") as bob:
            assert not (await call(alice, "write_document", name="design", text="v1\n"))[0]
            assert not (await call(alice, "write_document", name="notes", text="n1\n"))[0]
            _, token = await call(alice, "version")
            await call(bob, "wait_for", token=token)
            listing = await alice.read_resource("crdtdoc://artifacts")
            assert json.loads(listing.contents[0].text) == {
                "design": "document",
                "notes": "document",
            }
            read = await alice.read_resource("crdtdoc://artifact/design")
            assert read.contents[0].text == "v1\n"

            uri = "crdtdoc://artifact/design"
            await alice.subscribe_resource(uri)  # the older way, which most clients speak
            await call(bob, "append_document", name="notes", text="not watched\n")
            await call(bob, "append_document", name="design", text="v2\n")
            note = await asyncio.wait_for(heard.get(), timeout=10)
            assert note == uri and heard.empty()  # the notes change was not sent
            read = await alice.read_resource(uri)
            assert read.contents[0].text == "v1\nv2\n"
            await alice.unsubscribe_resource(uri)

            await call(alice, "changes_since_last_look")  # from here on
            waiting = asyncio.create_task(
                call(alice, "wait_for_change", timeout=20, artifacts="design")
            )
            await asyncio.sleep(0.5)
            await call(bob, "append_document", name="notes", text="still not watched\n")
            await asyncio.sleep(0.5)
            assert not waiting.done()  # a change elsewhere does not wake it
            await call(bob, "append_document", name="design", text="v3\n")
            failed, said = await asyncio.wait_for(waiting, timeout=20)
            assert not failed and "bob" in said and "design" in said

    run(body())

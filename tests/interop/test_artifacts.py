"""The Node peer reads and writes a task list and a spec by docs/SCHEMA.md alone; crdtdoc agents
read its writes correctly, and it derives the same status, claims and conflicts as they do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import crdtdoc
from tests.interop.test_yjs_peer import _line, node_peer, node_peer_available
from tests.support.aio import run
from tests.support.hubs import running_hub


def test_node_peer_and_crdtdoc_share_tasks_and_specs_by_the_schema(tmp_path: Path) -> None:
    node_peer_available()

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/artifacts"
            async with crdtdoc.connect(url, agent="py-agent") as py:
                tasks, spec = py.tasks("backlog"), py.spec("user-service")
                first = tasks.add("design schema")
                await asyncio.sleep(0.01)  # distinct creation times: a stable order
                second = tasks.add("write migration", depends_on=[first])
                tasks.claim(second)
                tasks.note(first, "py note")
                spec.set("User.id", "UUID")
                spec.set("listUsers", {"args": [], "returns": "list[User]"})
                offline = crdtdoc.Replica("py-offline")  # writes concurrently with the Node peer
                offline.apply_update(py.encode_update())
                await py.flush()

                async with node_peer("artifacts_peer.mjs", hub.url, "artifacts") as proc:
                    read = await _line(proc)
                    assert read["event"] == "read"
                    assert read["tasks"] == {
                        first: {
                            "title": "design schema",
                            "status": "open",
                            "claimants": [],
                            "notes": ["py note"],
                        },
                        second: {
                            "title": "write migration",
                            "status": "claimed",
                            "claimants": ["py-agent"],
                            "notes": [],
                        },
                    }
                    assert read["spec"] == {
                        "User.id": ["UUID"],
                        "listUsers": [{"args": [], "returns": "list[User]"}],
                    }
                    written = await _line(proc)
                    added = str(written["added"])
                    while added not in tasks:
                        await asyncio.sleep(0.02)
                    # crdtdoc reads the Node peer's writes by the same rules.
                    assert tasks.get(added).status == "open"
                    assert tasks.get(added).created_by == "node-agent"
                    t1 = tasks.get(first)
                    assert (t1.status, t1.claimants) == ("claimed", ["node-agent"])
                    assert [n.text for n in t1.notes] == ["py note", "node note"]
                    assert tasks.get(second).status == "done"
                    assert spec.get("User.id") == "int"  # the Node peer saw "UUID": superseded
                    assert spec.get("getUser") == "(id: int) -> User"
                    assert "node-agent" in py.agents().values()  # changes attributed by name
                    # A concurrent write from crdtdoc: both sides see the conflict.
                    offline.spec("user-service").set("Order.total", "int cents")
                    py.apply_update(offline.encode_update(since=py.version()))
                    final = await _line(proc)
                    assert final["conflict"] == ["decimal", "int cents"]
                    values = spec.conflicts()["Order.total"]
                    assert sorted(v.value for v in values) == ["decimal", "int cents"]
                    assert {v.agent for v in values} == {"node-agent", "py-offline"}

    run(body(), timeout=90)

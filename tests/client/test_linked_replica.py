"""`crdtdoc.client.linked_replica`: the replica side of a link, against a real in-process hub. A
journal is replayed when the replica is made (a record that does not apply is skipped) and
compacted to one snapshot; a guarded write is held until the hub decides, and a refused one is
undone here under a fresh client id and never journaled or sent; a guarded write needs the link
up; presence is checked and published."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc import Replica
from crdtdoc.client.journal import Journal, read_journal
from crdtdoc.client.linked_replica import LinkedReplica, LinkOptions
from crdtdoc.errors import Conflict, InvalidValue, NotConnected, UsageError
from crdtdoc.protocol.backoff import Backoff
from tests.support.aio import run
from tests.support.hubs import free_port, running_hub

FAST = Backoff(initial=0.05, maximum=0.2)


def test_a_journal_is_replayed_on_creation_skipping_a_record_that_does_not_apply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "agent.journal")
    writer = Replica("w")
    writer.document("d").insert(0, "kept")
    journal = Journal(path)
    journal.open(writer.encode_update())
    journal.append(b"\x01\x02 not an update", sync=True)
    before = writer.version()
    writer.document("d").append(" and more")
    journal.append(writer.encode_update(before), sync=True)
    journal.close()
    with caplog.at_level(logging.WARNING, logger="crdtdoc.client"):
        replica = LinkedReplica(
            f"ws://127.0.0.1:{free_port()}/r", "w", LinkOptions(state_file=path)
        )
    assert replica.document("d").read() == "kept and more"  # before any link is up
    assert "skipping a bad journal record" in caplog.text
    replica._close_journal()
    assert len(read_journal(path)) == 1  # rewritten as one snapshot of what applied


def _replayed(path: str) -> Replica:
    replica = Replica("replay")
    for record in read_journal(path):
        replica.apply_update(record)
    return replica


def test_a_refused_guarded_write_is_undone_under_a_fresh_id_and_never_journaled_or_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            state = str(tmp_path / "alice.journal")
            alice = crdtdoc.connect(url, agent="alice", state_file=state)
            async with alice, crdtdoc.connect(url, agent="bob") as bob:
                alice.map("api").set("get", "v1")
                await alice.flush(timeout=10)
                await bob.wait_for(alice.version(), timeout=10)
                read = alice.version()
                bob.map("api").set("get", "v2")
                await bob.flush(timeout=10)
                await alice.wait_for(bob.version(), timeout=10)
                monkeypatch.setattr(alice, "_check_fresh", lambda expect, on: None)  # the race
                first_id = alice.client_id
                with pytest.raises(Conflict, match="bob"):
                    async with alice.commit(expect=read, on=["api"]):
                        alice.map("api").set("list", "v1")
                        assert alice.map("api").get("list") == "v1"  # held, visible here
                assert "list" not in alice.map("api").to_dict()
                assert alice.client_id != first_id and not alice._held.active
                assert "list" not in _replayed(state).map("api").to_dict()  # never journaled
                async with alice.commit(expect=alice.version(), on=["api"]):
                    alice.map("api").set("list", "v2")
                await bob.wait_for(alice.version(), timeout=10)
                assert bob.map("api").to_dict() == {"get": "v2", "list": "v2"}
            assert _replayed(state).map("api").to_dict() == {"get": "v2", "list": "v2"}

    run(body())


def test_a_guarded_write_needs_the_link_up_and_changes_nothing_without_it() -> None:
    async def body() -> None:
        url = f"ws://127.0.0.1:{free_port()}/r"
        offline = crdtdoc.connect(url, agent="a", wait_synced=False, backoff=FAST)
        async with offline:
            offline.document("d").insert(0, "plain writes work offline")
            before = offline.version()
            with pytest.raises(NotConnected, match="guarded write needs the hub"):
                async with offline.commit():
                    offline.document("d").append("never")
            assert offline.version() == before and not offline._held.active

    run(body())


def test_presence_is_checked_and_published_and_urls_are_required(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one hub URL"):
        LinkedReplica([], "a", LinkOptions())

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            async with crdtdoc.connect(url, agent="a") as a, crdtdoc.connect(url, agent="b") as b:
                assert a.urls == [url] and a.url == url and a.max_message_bytes
                with pytest.raises(InvalidValue):
                    a.set_presence(task="x" * 201)
                a.set_presence(status="reviewing", task="task-7")
                a.set_presence(status="done")  # the task is kept
                async with asyncio.timeout(10):
                    while [(p.agent, p.status, p.task) for p in b.peers()] != [
                        ("a", "done", "task-7")
                    ]:
                        await asyncio.sleep(0.01)

    run(body())

"""`crdtdoc.client.link`: the websocket loop of a connected replica against a real in-process
hub. It dials again after the hub restarts (and resyncs what was written meanwhile), fails the
requests a dropped connection leaves unanswered, refuses requests while down, sends what is
queued and a goodbye when stopped, and runs calls from other threads on its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc.errors import NotConnected
from crdtdoc.protocol.backoff import Backoff
from tests.support.aio import run
from tests.support.hubs import free_port, running_hub

FAST = Backoff(initial=0.05, maximum=0.2)


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def test_the_link_dials_again_after_the_hub_restarts_and_resyncs(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "hub.db"
    url = f"ws://127.0.0.1:{port}/r"

    async def body() -> None:
        a = crdtdoc.connect(url, agent="a", backoff=FAST, wait_synced=False)
        async with running_hub(db, port=port):
            await a.start()
            await _until(lambda: a.synced)
            a.document("d").insert(0, "before ")
            await a.flush(timeout=10)
        await _until(lambda: not a.connected)
        assert a.last_error and a._link._outbox is None
        with pytest.raises(NotConnected, match=r"link to .* is down"):
            await a.next_number("n")  # refused at once, never pretended
        a.document("d").append("while down")  # not queued: the next sync carries it
        async with running_hub(db, port=port) as hub:
            await _until(lambda: a.synced)
            assert a.connects == 2
            await a.flush(timeout=10)
            async with crdtdoc.connect(hub.url + "/r", agent="b") as b:
                assert b.document("d").read() == "before while down"
            await a.close()

    run(body())


def test_a_request_left_unanswered_by_a_dropped_link_fails_and_the_link_comes_back(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            async with (
                crdtdoc.connect(url, agent="alice") as alice,
                crdtdoc.connect(url, agent="bob", backoff=FAST) as bob,
            ):
                await alice.acquire("l", ttl=30)
                waiting = asyncio.ensure_future(bob.acquire("l", wait=30))
                await _until(lambda: bool(bob._session._requests))  # in flight at the hub
                outbox = bob._link._outbox
                assert outbox is not None
                await outbox.ws.close()  # the connection drops (not the hub)
                with pytest.raises(NotConnected, match="outcome is unknown"):
                    await waiting
                await _until(lambda: bob.synced and bob.connects == 2)
                assert await bob.next_number("n") == 1  # requests work again

    run(body())


def test_stop_sends_what_is_queued_and_a_goodbye(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            async with crdtdoc.connect(url, agent="watcher") as watcher:
                a = crdtdoc.connect(url, agent="leaver")
                await a.start()
                await _until(lambda: [p.agent for p in watcher.peers()] == ["leaver"])
                a.document("d").insert(0, "last words")
                await a.close()  # no flush: stop sends what is queued
                await watcher.wait_for(a.version(), timeout=10)
                assert watcher.document("d").read() == "last words"
                await _until(lambda: watcher.peers() == [])  # said goodbye: gone at once

    run(body())


def test_calls_from_another_thread_run_on_the_links_loop(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            a = crdtdoc.connect(hub.url + "/r", agent="a")
            async with a:
                ran: list[int] = []
                here = threading.get_ident()
                await asyncio.to_thread(a._link.call, lambda: ran.append(threading.get_ident()))
                await _until(lambda: bool(ran))
                assert ran == [here]
                a._link.call(lambda: ran.append(0))  # on the loop already: at once
                assert ran == [here, 0]

    run(body())

"""What a room answers to crdtdoc's extension messages (`crdtdoc.server.room_requests`), on a
stand-in room whose parts record what they are asked: the welcome a hello gets and the name a
connection goes by, the messages a client may not send, the request rate, which requests are
answered at once and which in the background, and the reply a failed or abandoned one gets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from websockets.asyncio.server import ServerConnection

from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.extension import (
    Durable,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import Extension, decode_message
from crdtdoc.server.config import HubConfig
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.peer import Peer
from crdtdoc.server.room_requests import receive_extension
from crdtdoc.server.schedule import Callback, Scheduler
from crdtdoc.tokens import Grant
from crdtdoc.versions import Version

CONFIG = HubConfig(max_message_bytes=123_456)
DURABLE = Version({7: 3})


class Tasks(Scheduler):
    """The event loop's scheduler, keeping what it spawned for the test to await."""

    def __init__(self) -> None:
        self.spawned: list[asyncio.Task[Any]] = []

    def spawn(self, work: Coroutine[Any, Any, Any], done: Callback | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work)
        if done is not None:
            task.add_done_callback(done)
        self.spawned.append(task)


def stand_in(cluster: object = None, requests_per_s: float = 1000.0) -> SimpleNamespace:
    asked: list[tuple[Any, ...]] = []

    async def handle(room: str, peer: Peer, agent: str, rid: int, op: str, args: Any) -> Reply:
        asked.append(("coordinate", room, agent, rid, op, args))
        if op == "slow":
            await asyncio.sleep(60)
        if op == "broken":
            raise RuntimeError("a bug in the coordinator")
        return Reply(rid, {"value": 1})

    async def commit_shared(peer: Peer, request: Request) -> Reply:
        asked.append(("commit_shared", request.id))
        return Reply(request.id, {"applied": 1})

    def answer(what: str) -> Any:
        def record(peer: Peer, request: Request) -> Reply:
            asked.append((what, request.id))
            return Reply(request.id, {"from": what})

        return record

    return SimpleNamespace(
        name="team",
        config=CONFIG,
        cluster=cluster,
        coordinator=SimpleNamespace(handle=handle),
        guarded=SimpleNamespace(commit=answer("commit"), commit_shared=commit_shared),
        presence=SimpleNamespace(status_request=answer("status")),
        limits=RateLimits(1e9, 1e12, 1e9, requests_per_s=requests_per_s),
        scheduler=Tasks(),
        durable=DURABLE,
        asked=asked,
    )


def connection(grant: Grant | None = None, identity: str | None = None) -> Peer:
    peer = Peer(cast(ServerConnection, None), CONFIG, "127.0.0.1:1")
    peer.grant, peer.identity = grant, identity
    return peer


def send(room: SimpleNamespace, peer: Peer, message: Any) -> None:
    receive_extension(room, peer, encode_extension(message))


def answers(peer: Peer, queue: Iterable[bytes] | None = None) -> list[Any]:
    """The extension messages waiting to go to `peer` (or in `queue`), decoded."""
    sent = []
    for data in peer._queue if queue is None else queue:
        message = decode_message(data)
        assert isinstance(message, Extension)
        sent.append(decode_extension(message))
    return sent


def test_a_hello_is_welcomed_with_the_room_its_durable_version_and_message_limit() -> None:
    room = stand_in()
    modern, old = connection(), connection()
    send(room, modern, Hello("ann", 2))
    send(room, old, Hello("bob", 1))
    assert answers(modern) == [Welcome("team", DURABLE, 2, 123_456)]
    assert answers(old) == [Welcome("team", DURABLE, 1, 123_456)]  # full Durables only
    assert (modern.agent, modern.extensions, modern.durable_deltas) == ("ann", True, True)
    assert (old.agent, old.extensions, old.durable_deltas) == ("bob", True, False)


def test_with_a_token_a_connection_goes_by_its_identity_whatever_its_hello_says() -> None:
    async def body() -> None:
        room = stand_in()
        peer = connection(Grant("verified", "*"), "verified")
        send(room, peer, Hello("mallory"))
        send(room, peer, Hello("someone-else"))  # still the same agent: harmless
        assert peer.agent == "verified"
        assert [m.room for m in answers(peer)] == ["team", "team"]
        send(room, peer, Request(1, "next", {"sequence": "n"}))
        await asyncio.gather(*room.scheduler.spawned)
        assert room.asked == [("coordinate", "team", "verified", 1, "next", {"sequence": "n"})]

    asyncio.run(body())


def test_what_a_client_may_not_send() -> None:
    room = stand_in()
    peer = connection()
    with pytest.raises(InvalidMessage, match="send hello before any request"):
        send(room, peer, Request(1, "status", {}))
    send(room, peer, Hello("ann"))
    for message in (Welcome("team", Version()), Durable(Version()), Reply(1, {})):
        with pytest.raises(InvalidMessage, match="clients may not send"):
            send(room, peer, message)
    with pytest.raises(InvalidMessage, match="hello once"):
        send(room, peer, Hello("bob"))
    assert room.asked == []


def test_requests_past_the_rate_are_answered_rate_limited_and_not_run() -> None:
    room = stand_in(requests_per_s=1.0)  # a burst of 2, then one a second
    peer = connection()
    send(room, peer, Hello("ann"))
    for rid in (1, 2, 3):
        send(room, peer, Request(rid, "status", {"status": "busy"}))
    _welcome, first, second, third = answers(peer)
    assert (first.result, second.result) == ({"from": "status"}, {"from": "status"})
    assert (third.id, third.error) == (3, "rate_limited")
    assert third.message.endswith("; retry later")
    assert room.asked == [("status", 1), ("status", 2)]


def test_a_status_and_a_commit_on_one_hub_are_answered_at_once() -> None:
    room = stand_in()
    peer = connection()
    send(room, peer, Hello("ann"))
    send(room, peer, Request(1, "status", {}))
    send(room, peer, Request(2, "commit", {"updates": []}))
    assert answers(peer)[1:] == [Reply(1, {"from": "status"}), Reply(2, {"from": "commit"})]
    assert room.scheduler.spawned == []


def test_coordination_and_a_commit_across_hubs_are_answered_when_done() -> None:
    async def body() -> None:
        room = stand_in(cluster=object())
        peer = connection()
        send(room, peer, Hello("ann"))
        send(room, peer, Request(1, "acquire", {"name": "L", "ttl": 5}))
        send(room, peer, Request(2, "commit", {"updates": []}))
        assert len(answers(peer)) == 1  # only the welcome, so far
        await asyncio.gather(*room.scheduler.spawned)
        await asyncio.sleep(0)  # the done callbacks
        assert answers(peer)[1:] == [Reply(1, {"value": 1}), Reply(2, {"applied": 1})]
        assert room.asked == [
            ("coordinate", "team", "ann", 1, "acquire", {"name": "L", "ttl": 5}),
            ("commit_shared", 2),
        ]

    asyncio.run(body())


def test_a_request_that_fails_gets_an_internal_reply_and_one_abandoned_gets_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        room = stand_in()
        peer = connection()
        send(room, peer, Hello("ann"))
        with caplog.at_level(logging.ERROR, "crdtdoc.hub.room"):
            send(room, peer, Request(1, "broken", {}))
            send(room, peer, Request(2, "slow", {}))
            broken, slow = room.scheduler.spawned
            await asyncio.gather(broken, return_exceptions=True)
            slow.cancel()  # the asker left while it waited
            await asyncio.gather(slow, return_exceptions=True)
            await asyncio.sleep(0)
        assert answers(peer)[1:] == [Reply(1, {}, "internal", "the hub failed on this request")]
        assert "request failed" in caplog.text and "a bug in the coordinator" in caplog.text

    asyncio.run(body())


def test_replies_are_kept_through_a_dropped_send_queue() -> None:
    room = stand_in()
    peer = Peer(cast(ServerConnection, None), HubConfig(send_queue_messages=2), "127.0.0.1:1")
    peer.send(b"update 1")
    peer.send(b"update 2")
    send(room, peer, Hello("ann"))  # past the cap: the queue is dropped, the welcome kept
    send(room, peer, Request(1, "status", {}))  # while the resync is pending
    assert peer.resyncs == 1
    kept = answers(peer, peer._after_resync)
    assert [type(m).__name__ for m in kept] == ["Welcome", "Reply"]

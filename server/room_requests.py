"""What a room answers to crdtdoc's extension messages (PROTOCOL.md): a `Hello` is welcomed with
the room's name, durable version and message size limit; a `Request` (a kept status, a guarded
commit, a coordination operation) is answered with a `Reply` that survives a dropped queue.

Requests count against the sender's request rate, answered `rate_limited` rather than closed
over. What is decided at once (a status; a guarded commit on one hub, atomically for the room) is
answered at once; what must wait (coordination, a commit across hubs) runs in the background and
is answered when done, or not at all if the asker left meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.extension import (
    DELTA_PROTOCOL,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import Extension, encode_message
from crdtdoc.protocol.requests import ReadProvenance, ReplyCode
from crdtdoc.server.peer import Peer
from crdtdoc.server.provenance import read_rows

if TYPE_CHECKING:
    from crdtdoc.server.cluster import Cluster
    from crdtdoc.server.commit import GroupCommitter
    from crdtdoc.server.config import HubConfig
    from crdtdoc.server.coordination import Coordinator
    from crdtdoc.server.guarded import GuardedCommits
    from crdtdoc.server.limits import RateLimits
    from crdtdoc.server.presence import RoomPresence
    from crdtdoc.server.room_log import RoomLog
    from crdtdoc.server.schedule import Scheduler
    from crdtdoc.versions import Version


class AnsweringRoom(Protocol):
    """What the answers to extension messages read of their room (a `Room` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> HubConfig: ...

    @property
    def cluster(self) -> Cluster | None: ...

    @property
    def coordinator(self) -> Coordinator: ...

    @property
    def guarded(self) -> GuardedCommits: ...

    @property
    def presence(self) -> RoomPresence: ...

    @property
    def limits(self) -> RateLimits: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def durable(self) -> Version: ...

    @property
    def committer(self) -> GroupCommitter: ...

    @property
    def log(self) -> RoomLog: ...


log = logging.getLogger("crdtdoc.hub.room")


def receive_extension(room: AnsweringRoom, peer: Peer, message: Extension) -> None:
    """Handles one extension message from `peer`; raises `InvalidMessage` for one a client may
    not send (the connection is closed)."""
    ext = decode_extension(message)
    if isinstance(ext, Hello):
        agent = peer.identity or ext.agent  # with a token, its agent name counts
        if peer.agent is not None and peer.agent != agent:  # one name per connection
            raise InvalidMessage("a connection says hello once, as one agent")
        peer.extensions = True
        peer.agent = agent
        # Protocol 2 and up: durable deltas. The welcome's full version includes the
        # announcer's `told`, so every delta from now on joins onto it (server.durability).
        peer.durable_deltas = ext.protocol >= DELTA_PROTOCOL
        welcome = Welcome(
            room.name,
            room.durable,
            DELTA_PROTOCOL if peer.durable_deltas else 1,
            room.config.max_message_bytes,
        )
        peer.send(encode_message(encode_extension(welcome)), keep=True)
        return
    if not isinstance(ext, Request):
        raise InvalidMessage(f"clients may not send {type(ext).__name__} messages")
    if peer.agent is None:
        raise InvalidMessage("send hello before any request")
    exceeded = room.limits.request(peer.rate_key)
    if exceeded:  # answered, not closed: the agent may retry after a pause
        reply(peer, Reply(ext.id, {}, ReplyCode.RATE_LIMITED, f"{exceeded}; retry later"))
        return
    if ext.op == "status":  # a status the hub keeps for an agent between its commands
        reply(peer, room.presence.status_request(peer, ext))
        return
    if ext.op == "commit" and room.cluster is None:
        # decided now, atomically for the room
        reply(peer, room.guarded.commit(peer, ext))
        return
    if ext.op == "commit":
        work = room.guarded.commit_shared(peer, ext)
    elif ext.op == ReadProvenance.op:
        charge = lambda size: room.limits.answered(peer.rate_key, size)  # noqa: E731
        work = read_rows(room.committer, room.name, room.log, ext.id, ext.args, charge)
    else:
        work = room.coordinator.handle(room.name, peer, peer.agent, ext.id, ext.op, ext.args)
    room.scheduler.spawn(work, lambda done: _reply_when_done(peer, ext.id, done))


def reply(peer: Peer, answer: Reply) -> None:
    """Sends `answer`, kept through a dropped queue (a resync does not replace it): the request
    may have taken a lease or a number the asker must learn of."""
    peer.send(encode_message(encode_extension(answer)), keep=True)


def _reply_when_done(peer: Peer, request_id: int, task: asyncio.Task[Reply]) -> None:
    if task.cancelled():
        return  # the peer left while waiting
    error = task.exception()
    if error is not None:
        log.error("request failed", exc_info=error)
        reply(peer, Reply(request_id, {}, ReplyCode.INTERNAL, "the hub failed on this request"))
    else:
        reply(peer, task.result())

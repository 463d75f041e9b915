"""Statuses the hub keeps for agents between their commands (`RoomPresence.keep_status`, the
`status` request): stamped with the caller's own name, untouchable by any connection, renewed so
Yjs editors keep showing them, and gone when their time ends or the agent clears them."""

from __future__ import annotations

import json
from pathlib import Path

from crdtdoc.protocol.extension import Request
from crdtdoc.server.commit import StoredRoom
from crdtdoc.server.config import HubConfig
from crdtdoc.server.presence import KEPT_CLIENT_IDS, KEPT_RENEW_SECONDS, KeptStatus, kept_client_id
from crdtdoc.server.room import Room
from crdtdoc.tokens import Grant
from tests.server.test_presence import presence, received
from tests.server.test_room import ManualScheduler, new_peer, new_room


def _request(**args: object) -> Request:
    return Request(1, "status", dict(args))


def test_a_kept_status_shows_the_caller_s_own_name_and_no_connection_can_change_it(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path)
    watcher, alice, mallory = (new_peer(config, None, None) for _ in range(3))
    alice.agent, mallory.agent = "alice", "mallory"
    for peer in (watcher, alice, mallory):
        room.join(peer)
    reply = room.presence.status_request(alice, _request(status="reviewing", task="t1", ttl=60))
    assert reply.error is None, reply.message
    client = reply.result["client"]
    assert client == kept_client_id("alice") and client >= KEPT_CLIENT_IDS
    [shown] = received(watcher)
    state = json.loads(shown.state)
    assert (state["agent"], state["status"], state["task"]) == ("alice", "reviewing", "t1")
    assert state["until"] == room.scheduler.wall() + 60
    # mallory can neither overwrite nor remove it, whatever clock she sends
    forged = '{"agent":"alice","status":"deleting everything"}'
    room.presence.receive(mallory, presence((client, shown.clock + 9, forged)))
    room.presence.receive(mallory, presence((client, shown.clock + 10, "null")))
    assert room.presence.entries[client] == shown
    assert received(watcher) == [shown]
    room.leave(alice)  # the command ended: the status stays
    assert client in {e.client for e in room.presence.present()}


def test_a_kept_status_is_renewed_then_ends_on_time_or_when_cleared(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    scheduler = room.scheduler
    assert isinstance(scheduler, ManualScheduler)
    watcher, alice = new_peer(config, None, None), new_peer(config, None, None)
    alice.agent = "alice"
    room.join(watcher)
    room.join(alice)
    room.presence.status_request(alice, _request(status="testing", ttl=40))
    for _ in range(3):  # 15 s, 30 s, then 40 s: renewed twice, then removed
        scheduler.now += KEPT_RENEW_SECONDS
        due, scheduler.later = scheduler.later, []
        for callback in due:
            callback()
    states = [(e.clock - received(watcher)[0].clock, e.removed) for e in received(watcher)]
    assert states == [(0, False), (1, False), (2, False), (3, True)]
    assert room.presence.present() == [] and room.presence.kept == {}
    # set again, then cleared by the agent: removed at once, and the old timer does nothing
    room.presence.status_request(alice, _request(status="back", ttl=600))
    room.presence.status_request(alice, _request(status=None))
    assert room.presence.present() == [] and received(watcher)[-1].removed
    for callback in scheduler.later:
        callback()
    assert room.presence.present() == []


def test_bad_status_requests_are_refused_with_a_reason(tmp_path: Path) -> None:
    room, config = new_room(tmp_path)
    reader = new_peer(config, Grant("reader", "*", read_only=True), "reader")
    reader.agent = "reader"
    writer = new_peer(config, None, None)
    writer.agent = "writer"
    refused = room.presence.status_request(reader, _request(status="x"))
    assert refused.error == "forbidden" and "read-only" in refused.message
    for args, words in (
        ({"status": 5}, "is a str"),
        ({"status": "x" * 201}, "at most 200"),
        ({"status": "x", "task": ["t"]}, "is a str"),
        ({"status": "x", "ttl": 0}, "ttl"),
        ({"status": "x", "ttl": float("nan")}, "ttl"),
    ):
        reply = room.presence.status_request(writer, _request(**args))
        assert reply.error == "invalid" and words in reply.message, (args, reply)
    assert room.presence.entries == {}


def test_a_kept_status_outlives_its_room_being_unloaded_and_loaded_again(tmp_path: Path) -> None:
    """An empty room unloads after --room-idle-seconds: the status went with it (and its
    renewals kept the unloaded room alive), so `crdtdoc peers` showed nobody after 30 s."""
    room, config = new_room(tmp_path)
    store: dict[int, KeptStatus] = {}
    first = _room_with(room, config, store)
    alice = new_peer(config, None, None)
    alice.agent = "alice"
    first.join(alice)
    first.presence.status_request(alice, _request(status="reviewing", ttl=3600))
    first.leave(alice)
    first.unload()
    renewals = list(first.scheduler.later)  # type: ignore[attr-defined]
    again = _room_with(room, config, store)
    watcher = new_peer(config, None, None)
    again.join(watcher)
    [shown] = [e for e in received(watcher) if not e.removed]
    assert json.loads(shown.state)["status"] == "reviewing"
    before = dict(store)
    for callback in renewals:  # the unloaded room's timers do nothing now
        callback()
    assert store == before


def _room_with(like: Room, config: HubConfig, store: dict[int, KeptStatus]) -> Room:
    """A room like `like` (same committer and coordinator) holding the hub's `store`."""
    room = Room(
        "r",
        like.committer,
        config,
        like.coordinator,
        like._limits,
        scheduler=ManualScheduler(),
        kept=store,
    )
    room.restore(StoredRoom())
    return room

"""The room core without sockets or an event loop: random and mutated frames from peers with
every kind of grant only ever yield the room's typed remote errors, refused writes change nothing,
and honest peers keep converging through it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection

from crdtdoc import Replica
from crdtdoc.errors import InvalidMessage, RemoteError
from crdtdoc.protocol.awareness import AwarenessEntry, encode_awareness
from crdtdoc.protocol.extension import Hello, Request, encode_extension
from crdtdoc.protocol.messages import (
    Awareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.server.commit import GroupCommitter, StoredRoom
from crdtdoc.server.config import HubConfig
from crdtdoc.server.limits import RateLimits
from crdtdoc.server.local_coordination import LocalCoordinator
from crdtdoc.server.peer import Peer
from crdtdoc.server.room import Room
from crdtdoc.server.schedule import Callback, Scheduler
from crdtdoc.tokens import Grant
from tests.support.builders import random_edit


class ManualScheduler(Scheduler):
    """A clock the test moves, and background work that is only collected (never run)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.later: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def spawn(self, work: Coroutine[Any, Any, Any], done: Callback | None = None) -> None:
        work.close()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.later.append(callback)


def new_room(tmp_path: Path, **settings: Any) -> tuple[Room, HubConfig]:
    config = HubConfig(db=str(tmp_path / "unused.db"), **settings)
    committer = GroupCommitter()  # never started: appends wait in memory, as on a slow disk
    limits = RateLimits(1e9, 1e12, 1e9, structs_per_s=config.structs_per_second)
    coordinator = LocalCoordinator(cast(Any, committer))
    room = Room("r", committer, config, coordinator, limits, scheduler=ManualScheduler())
    room.restore(StoredRoom())
    return room, config


def new_peer(config: HubConfig, grant: Grant | None, identity: str | None) -> Peer:
    peer = Peer(cast(ServerConnection, None), config, "127.0.0.1:1")
    peer.grant, peer.identity = grant, identity
    return peer


def corpus(seed: int) -> list[bytes]:
    """Honest frames of every kind, from a few replicas editing."""
    rng = random.Random(seed)
    writers = [Replica(f"w{i}") for i in range(3)]
    frames: list[bytes] = []
    for _ in range(12):
        w = rng.choice(writers)
        before = w.version()
        random_edit(w, rng)
        frames.append(encode_message(SyncUpdate(w.encode_update(before))))
    frames.append(encode_message(SyncStep1(b"\x00")))
    frames.append(encode_message(SyncStep2(writers[0].encode_update())))
    entry = AwarenessEntry(5, 1, '{"user": {"name": "w"}}')
    frames.append(encode_message(Awareness(encode_awareness([entry]))))
    frames.append(encode_message(encode_extension(Hello("w", 1))))
    frames.append(encode_message(encode_extension(Request(1, "next", {"name": "n"}))))
    frames.append(encode_message(encode_extension(Request(2, "commit", {"updates": []}))))
    return frames


def mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif roll < 0.6 and data:
            del data[rng.randrange(len(data)) :]
        elif roll < 0.8:
            data[rng.randint(0, len(data)) : rng.randint(0, len(data))] = rng.randbytes(3)
        else:
            data += rng.randbytes(rng.randint(1, 8))
    return bytes(data)


GRANTS = [
    (None, None),
    (Grant("mallory", "*"), "mallory"),
    (Grant("reader", "*", read_only=True), "reader"),
    (Grant("scoped", "*", artifacts=frozenset({"text"})), "scoped"),
]


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32),
    steps=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=40),
)
def test_random_and_mutated_frames_only_ever_raise_typed_remote_errors(
    seed: int, steps: list[tuple[int, bool]], tmp_path_factory: Any
) -> None:
    room, config = new_room(tmp_path_factory.mktemp("room"))
    rng = random.Random(seed)
    frames = corpus(seed)
    honest = Replica("honest")
    honest_peer = new_peer(config, None, None)
    room.join(honest_peer)
    for grant_index, mutated in steps:
        grant, identity = GRANTS[grant_index]
        peer = new_peer(config, grant, identity)
        room.join(peer)
        frame = rng.choice(frames)
        data = mutate(frame, rng) if mutated else frame
        with contextlib.suppress(RemoteError):  # the hub closes that connection; nothing else
            room.receive(peer, data)
        room.leave(peer)
        before = honest.version()
        random_edit(honest, rng)  # the honest peer is never refused, whatever came before
        room.receive(honest_peer, encode_message(SyncUpdate(honest.encode_update(before))))
    # What the room holds reads, and an honest replica converges with it.
    fresh = Replica("fresh")
    fresh.apply_update(room.replica.encode_update())
    assert fresh.document("text").read() == room.replica.document("text").read()
    honest.apply_update(room.replica.encode_update())
    assert honest.document("text").read() == room.replica.document("text").read()
    assert all(isinstance(decode_message(m), object) for m in honest_peer._queue)


def test_an_unloaded_room_is_freed() -> None:
    """The replica's subscription to its engine document is a cycle the garbage collector
    cannot break: every unloaded room stayed in memory (3,000 empty rooms: +35 MB)."""
    import gc
    import tempfile
    import weakref

    room, _ = new_room(Path(tempfile.mkdtemp()))
    replica = weakref.ref(room.replica)
    room.unload()
    del room
    gc.collect()
    assert replica() is None


def test_a_connection_says_hello_once_as_one_agent(tmp_path: Path) -> None:
    """One connection sent hello under 256 names, then a `status` for each: every kept-status
    slot of the room, for 24 h, from one connection of a hub without a secret."""
    room, config = new_room(tmp_path)
    peer = new_peer(config, None, None)
    room.join(peer)
    hello = encode_message(encode_extension(Hello("alice", 1)))
    room.receive(peer, hello)
    room.receive(peer, hello)  # the same name again is harmless
    with pytest.raises(InvalidMessage, match="hello once"):
        room.receive(peer, encode_message(encode_extension(Hello("mallory", 1))))
    assert peer.agent == "alice"


def test_an_up_to_date_peers_step_2_is_answered_without_parsing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every reconnecting peer that has everything sends the room's whole delete set as its
    step 2: the room tells from the bytes that it brings nothing (no parse, no structs charged,
    nothing recorded for the sender), and the peer's session counts as synced."""
    room, config = new_room(tmp_path)
    writer = Replica("writer")
    for i in range(40):
        writer.document("text").insert(0, f"line {i}\n")
        writer.document("text").delete(3 * i, 2)
    author = new_peer(config, Grant("writer", "*"), "writer")
    room.join(author)
    room.receive(author, encode_message(SyncStep2(writer.encode_update())))
    from pycrdt import Doc

    peer_doc: Doc = Doc()
    peer_doc.apply_update(room.replica.encode_update())
    step2 = encode_message(SyncStep2(peer_doc.get_update(room.replica.state_vector())))
    reconnecting = new_peer(config, Grant("reader", "*", read_only=True), "reader")
    room.join(reconnecting)
    charged: list[int] = []
    monkeypatch.setattr(room.limits, "structs", lambda key, count: charged.append(count))

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed an update that brings nothing")

    monkeypatch.setattr("crdtdoc.server.intake.parse_update", no_parsing)
    monkeypatch.setattr("crdtdoc.replica.remote.parse_update", no_parsing)
    before = room.replica.version()
    assert room.brings_nothing(step2)
    room.receive(reconnecting, step2)
    assert room.peers[reconnecting].synced
    assert charged == []
    assert room.replica.version() == before


def _lagging_room(tmp_path: Path, step1: bool) -> tuple[Room, Peer, Replica, Replica]:
    """A room with a 20,000-character text, a writer, and a lagger that (if `step1`) synced
    from nothing and whose queue drained; then the writer edits 100 times, deleting old text
    too, while the lagger's queue (8 messages) overflows. Returns the room, the lagger, what
    the lagger holds, and the writer."""
    room, config = new_room(tmp_path, send_queue_messages=8)
    writer, lagger = new_peer(config, None, None), new_peer(config, None, None)
    typist, held = Replica("typist"), Replica("lagger")
    room.join(writer)
    room.join(lagger)

    def edit(change: Callable[[], None]) -> None:
        before = typist.version()
        change()
        room.receive(writer, encode_message(SyncUpdate(typist.encode_update(before))))

    text = typist.document("d")
    edit(lambda: text.insert(0, "".join(f"{i:05d}" for i in range(4000))))
    if step1:
        room.receive(lagger, encode_message(SyncStep1(b"\x00")))
    for data in lagger._queue:  # its writer sends all of it, and the queue drains
        message = decode_message(data)
        if isinstance(message, (SyncStep2, SyncUpdate)):
            held.apply_update(message.update, trusted=True)
    lagger._queue.clear()
    lagger._queued_bytes = 0
    room._drained(lagger)
    for i in range(100):
        edit(partial(text.delete, 200 * i, 3) if i % 2 else partial(text.insert, 100 * i, "new"))
    assert lagger.resyncs >= 1
    return room, lagger, held, typist


def test_a_lagging_peer_is_resynced_with_what_it_lacks_not_the_whole_room(tmp_path: Path) -> None:
    room, lagger, held, typist = _lagging_room(tmp_path, step1=True)
    messages = room._resync_messages(lagger)
    step2 = decode_message(messages[0])
    assert isinstance(step2, SyncStep2)
    sizes = len(messages[0]), len(room.whole_state())
    assert sizes[0] * 4 < sizes[1], sizes
    held.apply_update(step2.update, trusted=True)
    assert held.version() == room.replica.version() == typist.version()
    assert held.document("d").read() == typist.document("d").read()


def test_a_peer_never_sent_the_room_is_resynced_with_all_of_it(tmp_path: Path) -> None:
    """A peer whose queue drained before it asked for anything (no sync step 1) holds none of
    the room: its resync is the whole room (the shared copy)."""
    room, lagger, held, typist = _lagging_room(tmp_path, step1=False)
    messages = room._resync_messages(lagger)
    assert messages[0] is room.whole_state()
    step2 = decode_message(messages[0])
    assert isinstance(step2, SyncStep2)
    held.apply_update(step2.update, trusted=True)
    assert held.document("d").read() == typist.document("d").read()

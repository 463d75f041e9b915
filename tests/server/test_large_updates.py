"""A large update is served without starving others: the hub parses it off the event loop,
applies it a slice per turn, and an identity over its struct budget is read later, never
refused (issue 16 h)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect

import crdtdoc
from crdtdoc import Replica
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, encode_message
from crdtdoc.server.intake import read_message
from crdtdoc.server.limits import Bucket, RateLimits
from crdtdoc.updates import parse_update
from tests.server.test_room import new_peer, new_room
from tests.support.aio import run
from tests.support.builders import tiny_structs
from tests.support.hubs import running_hub


def test_a_large_update_is_applied_a_slice_at_a_time_and_others_interleave(
    tmp_path: Path,
) -> None:
    room, config = new_room(tmp_path, structs_per_second=1000)
    big, small = new_peer(config, None, None), new_peer(config, None, None)
    room.join(big)
    room.join(small)
    room.receive(big, encode_message(SyncUpdate(tiny_structs(10_000, client=7, root="big"))))
    assert room.replica.applied()[0][7] < 10_000  # a slice applied, not the whole
    # 10,000 structs at 1,000 a second, past a burst of 2,000: the rest is served later
    assert room._limits.debt(big.rate_key) > 5
    writer = Replica("w")
    writer.document("d").insert(0, "between slices")
    room.receive(small, encode_message(SyncUpdate(writer.encode_update())))
    assert room.replica.document("d").read() == "between slices"
    steps = 0
    while room.step(big):
        steps += 1
    assert steps >= 3 and room.replica.applied()[0][7] == 10_000
    assert len(room.replica.document("big").read()) == 10_000


def test_struct_debt_is_paid_back_at_the_rate() -> None:
    bucket = Bucket(1000, 2000)
    assert bucket.charge(1500, now=0.0) == 0.0
    assert bucket.charge(1500, now=0.0) == 1.0  # 1,000 in debt at 1,000 a second
    assert bucket.charge(0, now=1.0) == 0.0
    assert bucket.take(10, now=1.0) is False  # nothing left yet
    assert bucket.take(10, now=1.5) is True


def test_an_honest_update_is_served_while_a_megabyte_of_tiny_structs_is_applied(
    tmp_path: Path,
) -> None:
    """The honest edit is applied before the large update's last slice: it was not made to
    wait for the whole megabyte (on one pass over the loop, it was)."""
    big = tiny_structs(130_000, client=7, root="big")
    assert 800_000 < len(big) < 1024 * 1024

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            async with crdtdoc.connect(url, agent="honest") as honest:
                honest.document("d").insert(0, "warm")
                await honest.flush()
                room = hub.rooms["r"]
                order: list[str] = []
                mine = honest.client_id

                def note(update: bytes, _local: bool) -> None:
                    order.append("honest" if mine in parse_update(update).structs else "big")

                room.replica.on_update(note)
                async with ws_connect(url, max_size=None) as attacker:
                    await attacker.send(encode_message(SyncStep1(b"\x00")))
                    await attacker.send(encode_message(SyncUpdate(big)))
                    await asyncio.sleep(0.05)
                    honest.document("d").insert(0, "x")
                    await honest.flush(timeout=20)
                    for _ in range(400):
                        if room.replica.applied()[0].get(7) == 130_000:
                            break
                        await asyncio.sleep(0.05)
                assert room.replica.applied()[0].get(7) == 130_000
                assert "honest" in order and order.index("honest") < len(order) - 1, order

    run(body(), timeout=60)


def test_asking_for_a_large_room_again_and_again_is_paid_from_the_askers_budget(
    tmp_path: Path,
) -> None:
    """Sync step 1 costs the asker a few bytes and the hub a whole room: the answers count
    against the asker's byte budget, and past it the hub reads the asker's next message later."""
    room, config = new_room(tmp_path)
    room._limits = RateLimits(1e9, 1_000_000, 1e9)
    writer, asker = new_peer(config, None, None), new_peer(config, None, None)
    room.join(writer)
    room.join(asker)
    room.receive(writer, encode_message(SyncUpdate(_text_of(400_000))))
    debts = []
    for _ in range(8):
        room.receive(asker, encode_message(SyncStep1(b"\x00")))
        debts.append(room._limits.debt(asker.rate_key))
    assert debts[0] == 0.0 and debts[-1] > 1.0, debts


def _text_of(size: int) -> bytes:
    writer = Replica("big-text")
    writer.document("t2").insert(0, "y" * size)
    return writer.encode_update()


def test_peers_that_need_the_whole_room_share_one_encoding_of_it(tmp_path: Path) -> None:
    """Thirty connections asking for everything, or resynced, hold one copy of the room, not
    thirty (review finding: read-only connections that never read took hundreds of MB)."""
    room, config = new_room(tmp_path)
    writer = new_peer(config, None, None)
    room.join(writer)
    room.receive(writer, encode_message(SyncUpdate(_text_of(200_000))))
    askers = [new_peer(config, None, None) for _ in range(30)]
    for asker in askers:
        room.join(asker)
        asker._queue.clear()
        room.receive(asker, encode_message(SyncStep1(b"\x00")))
    answers = [asker._queue[-1] for asker in askers]
    assert all(answer is answers[0] for answer in answers)
    assert room._resync_messages(askers[0])[0] is answers[0]
    room.receive(writer, encode_message(SyncUpdate(_text_of(10))))  # the room changed
    assert room._resync_messages(askers[0])[0] is not answers[0]


def test_an_update_left_whole_against_a_stale_state_is_cut_again(tmp_path: Path) -> None:
    """Review finding: the parser thread cuts against a copy of the room's state; an update that
    still waited on that copy was left whole and, once its dependency had arrived meanwhile,
    applied in one turn of the loop."""
    room, config = new_room(tmp_path)
    peer = new_peer(config, None, None)
    room.join(peer)
    writer = Replica("w", client_id=7)
    text = writer.document("big")
    text.insert(0, "seed")
    seed = writer.encode_update()
    before = writer.version()
    for _ in range(6_000):
        text.insert(0, "x")
    big = encode_message(SyncUpdate(writer.encode_update(before)))
    stale = read_message(big, {})  # cut before the seed arrived: it cannot be cut
    assert stale.slices is not None and len(stale.slices) == 1
    room.receive(peer, encode_message(SyncUpdate(seed)))
    room.receive(peer, big, stale)
    assert room.step(peer)  # sliced after all: more slices wait for the next turns
    while room.step(peer):
        pass
    assert room.replica.document("big").read() == text.read()

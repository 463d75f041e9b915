"""`crdtdoc.client.outbox`: the queue of one hub connection. Its writer sends messages in the
order they were queued, merging runs of waiting sync updates within the byte limit it is given;
past its bounds it drops what waits and closes the connection (the next sync resends it all)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from crdtdoc import Replica
from crdtdoc.client import outbox as outbox_module
from crdtdoc.client.outbox import MAX_OUTBOX_BYTES, MAX_OUTBOX_MESSAGES, Outbox
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, decode_message, encode_message
from tests.support.aio import run


class FakeSocket:
    """Records what the writer sends and how it closes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, message: bytes) -> None:
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _edits(count: int) -> tuple[Replica, list[bytes]]:
    writer = Replica("w")
    updates: list[bytes] = []
    writer.on_update(lambda u, local: updates.append(encode_message(SyncUpdate(u))))
    for i in range(count):
        writer.document("d").insert(i, str(i))
    return writer, updates


async def _drained(outbox: Outbox, socket: FakeSocket) -> None:
    """Runs the writer until the queue is empty, then stops it."""
    writer = asyncio.get_running_loop().create_task(outbox.run())
    while outbox.messages or outbox.ready.is_set():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    writer.cancel()


def _outbox(socket: FakeSocket, max_bytes: int = 1 << 20) -> Outbox:
    return Outbox(cast(Any, socket), lambda: max_bytes)


def test_waiting_updates_leave_merged_and_other_messages_keep_their_place() -> None:
    writer, updates = _edits(5)
    step1 = encode_message(SyncStep1(b"\x00"))

    async def body() -> list[bytes]:
        socket = FakeSocket()
        outbox = _outbox(socket)
        for message in [*updates[:3], step1, *updates[3:]]:
            outbox.put(message)
        assert outbox.bytes == sum(map(len, updates)) + len(step1)
        await _drained(outbox, socket)
        assert outbox.bytes == 0 and socket.closed is None
        return socket.sent

    sent = run(body())
    assert len(sent) == 3 and sent[1] == step1  # [merged 3] [step 1] [merged 2]
    reader = Replica("r")
    for message in (sent[0], sent[2]):
        decoded = decode_message(message)
        assert isinstance(decoded, SyncUpdate)
        reader.apply_update(decoded.update)
    assert reader.document("d").read() == writer.document("d").read() == "01234"


def test_nothing_merges_past_the_byte_limit() -> None:
    _, updates = _edits(4)

    async def body() -> list[bytes]:
        socket = FakeSocket()
        outbox = _outbox(socket, max_bytes=min(map(len, updates)) + 1)  # room for one only
        for message in updates:
            outbox.put(message)
        await _drained(outbox, socket)
        return socket.sent

    assert run(body()) == updates  # one by one, in order


def test_past_its_message_bound_the_outbox_drops_everything_and_closes_the_link() -> None:
    async def body() -> FakeSocket:
        socket = FakeSocket()
        outbox = _outbox(socket)
        for _ in range(MAX_OUTBOX_MESSAGES):
            outbox.put(b"x")
        assert not outbox.overflowed
        outbox.put(b"one too many")
        assert outbox.overflowed and not outbox.messages
        outbox.put(b"after")  # ignored once overflowed
        assert not outbox.messages
        await asyncio.wait_for(outbox.run(), 5)  # returns once it has closed
        return socket

    socket = run(body())
    assert socket.sent == [] and socket.closed is not None
    assert socket.closed[0] == 1000 and "overflow" in socket.closed[1]


def test_past_its_byte_bound_the_outbox_overflows_too(monkeypatch: Any) -> None:
    monkeypatch.setattr(outbox_module, "MAX_OUTBOX_BYTES", 100)
    outbox = _outbox(FakeSocket())
    outbox.put(b"x" * 101)  # taken: the bound is checked before each message
    assert not outbox.overflowed and outbox.bytes == 101
    outbox.put(b"y")
    assert outbox.overflowed and not outbox.messages
    assert MAX_OUTBOX_BYTES == 16 * 1024 * 1024

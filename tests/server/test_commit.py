"""The group committer (`crdtdoc.server.commit`), on a store in memory: writes handed over while
a transaction runs go in the next one, a failing store keeps them and retries, and the reasons
it gives say what the database said, not where it is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from crdtdoc.errors import StorageError
from crdtdoc.server import commit
from crdtdoc.server.commit import (
    MAX_REASON,
    Append,
    Compact,
    GroupCommitter,
    StoredRoom,
    StoreFailure,
    Write,
    failure_reason,
)
from tests.support.aio import run


class MemoryCommitter(GroupCommitter):
    """Transactions in a list; `gate` holds a transaction open, `failures` makes the next ones
    fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Write]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures: list[Exception] = []
        self.log: list[bytes] = []

    async def load(self, room: str) -> StoredRoom:
        return StoredRoom(updates=list(self.log), last_seq=len(self.log))

    async def _write(self, writes: list[Write]) -> list[int]:
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(writes)
        seqs = []
        for write in writes:
            if isinstance(write, Append):
                self.log.append(write.data)
                seqs.append(len(self.log))
        return seqs

    async def _close_store(self) -> None:
        pass


def durable(events: list[str], name: str) -> commit.DurableCallback:
    def taken() -> Callable[[], None]:
        events.append(f"{name} taken")
        return lambda: events.append(f"{name} durable")

    return taken


def test_writes_made_during_a_transaction_go_together_in_the_next_one() -> None:
    async def body() -> None:
        store = MemoryCommitter()
        appended: list[tuple[str, int, bytes]] = []
        store.on_appended = lambda room, seq, data: appended.append((room, seq, data))
        events: list[str] = []
        store.start()
        store.gate.clear()  # the first transaction hangs until the others are queued
        store.append("r", 0, b"one", durable(events, "r"))
        await asyncio.sleep(0.01)
        store.append("r", 0, b"two", durable(events, "r"))
        store.compact("s", 0, b"snapshot", durable(events, "s"))
        store.append("s", 0, b"three", durable(events, "s"))
        store.gate.set()
        await asyncio.wait_for(store.drained(), 5)
        assert [[w.data for w in batch] for batch in store.batches] == [
            [b"one"],
            [b"two", b"snapshot", b"three"],
        ]
        assert isinstance(store.batches[1][1], Compact)
        assert appended == [("r", 1, b"one"), ("r", 2, b"two"), ("s", 3, b"three")]
        # a room's callback is asked for once per batch, and its durability follows the commit
        assert events == ["r taken", "r durable", "r taken", "s taken", "r durable", "s durable"]
        assert store.commits == 2
        await store.close()

    run(body())


def test_a_failing_store_keeps_the_writes_and_says_why_until_it_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit, "RETRY_SECONDS", 0.01)

    async def body() -> None:
        store = MemoryCommitter()
        reasons: list[str] = []
        recovered: list[bool] = []
        store.on_failed = reasons.append
        store.on_recovered = lambda: recovered.append(True)
        store.failures = [
            StoreFailure("append to room 'r'", "database or disk is full\nmore detail"),
            StoreFailure("append to room 'r'", "database or disk is full"),
            RuntimeError("/secret/path/hub.db is gone"),
        ]
        store.start()
        store.append("r", 0, b"kept", durable([], "r"))
        await asyncio.wait_for(store.drained(), 5)
        assert reasons == [
            "database or disk is full",
            "database or disk is full",
            "unexpected RuntimeError",
        ]
        assert store.failed_commits == 3 and recovered == [True] and store.failure is None
        assert store.log == [b"kept"]
        await store.close()

    run(body())


def test_a_closed_store_takes_nothing_more_and_close_writes_what_is_queued() -> None:
    async def body() -> None:
        store = MemoryCommitter()
        store.start()
        store.append("r", 0, b"last", durable([], "r"))
        await store.close()
        assert store.log == [b"last"]
        with pytest.raises(StorageError, match="closed"):
            store.append("r", 0, b"late", durable([], "r"))

    run(body())


def test_a_failure_s_reason_is_its_first_line_trimmed_and_the_message_says_what_failed() -> None:
    failure = StoreFailure("append to room 'r'", "x" * 500 + "\nsecond line")
    assert failure.reason == "x" * MAX_REASON
    assert str(failure).startswith("cannot append to room 'r': xxx")
    detailed = StoreFailure("compact room 'r'", "disk full", detail="disk full (errno 28)")
    assert str(detailed) == "cannot compact room 'r': disk full (errno 28)"
    assert detailed.reason == "disk full"
    assert StoreFailure("load", "  ").reason == "unknown"
    assert failure_reason(detailed) == "disk full"
    assert failure_reason(ValueError("/where/the/db/is")) == "unexpected ValueError"

"""The coordination interface and the code both coordinators share: dispatch and authorization of
requests, the claim grace, the per-agent limit, the expiry hook, deadlock detection; and the
single-hub `LocalCoordinator` driven through it directly (no sockets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import crdtdoc.server.coordination
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import Acquire, Release, Renew, ReplyCode, RequestError
from crdtdoc.server.coordination import Coordinator
from crdtdoc.server.coordination_rules import Caller
from crdtdoc.server.local_coordination import LocalCoordinator
from crdtdoc.server.shared_coordination import SharedCoordinator
from crdtdoc.server.store import SqliteCommitter, SqliteStore
from crdtdoc.server.wait_graph import deadlock_refusal, find_cycle
from crdtdoc.tokens import Grant
from tests.support.aio import run

ANYONE = SimpleNamespace(grant=None, identity=None)  # a connection to a hub without a secret
READER = SimpleNamespace(grant=Grant("rita", "*", read_only=True), identity="rita")


class Recording(Coordinator):
    """A coordinator whose operations only record how they were called."""

    def __init__(self, **hooks: Any) -> None:
        super().__init__(hooks.get("on_expire"), max_leases_per_agent=2, abandoned=None)
        self.calls: list[tuple[Any, ...]] = []

    async def load(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def forget(self, peer: object) -> None:
        pass

    def fence_refusal(self, room: str, name: str, token: int, writer: str | None) -> str | None:
        return None

    async def _acquire(
        self, room: str, peer: object, agent: str, request: Acquire
    ) -> dict[str, Any]:
        self.calls.append(("acquire", room, agent))
        if request.name == "taken":
            raise RequestError(ReplyCode.HELD, "lease 'taken' is held by bob", holder="bob")
        return {"token": 1}

    async def _renew(self, room: str, caller: Caller, request: Renew) -> dict[str, Any]:
        self.calls.append(("renew", room, caller.agent))
        return {}

    async def _release(self, room: str, caller: Caller, request: Release) -> dict[str, Any]:
        self.calls.append(("release", room, caller.agent))
        return {"released": True}

    async def _list(self, room: str, caller: Caller) -> dict[str, Any]:
        self.calls.append(("leases", room, caller.agent))
        return {"leases": []}

    async def _next(self, room: str, name: str) -> int:
        self.calls.append(("next", room, name))
        return 7


def test_a_request_is_authorized_then_dispatched_and_a_refusal_becomes_the_reply() -> None:
    async def body() -> None:
        coordinator = Recording()
        assert await coordinator.handle(
            "r", ANYONE, "ann", 1, "acquire", {"name": "x", "ttl": 5}
        ) == Reply(1, {"token": 1})
        assert await coordinator.handle("r", ANYONE, "ann", 2, "next", {"sequence": "s"}) == Reply(
            2, {"value": 7}
        )
        held = await coordinator.handle(
            "r", ANYONE, "ann", 3, "acquire", {"name": "taken", "ttl": 5}
        )
        assert held == Reply(3, {"holder": "bob"}, "held", "lease 'taken' is held by bob")
        unknown = await coordinator.handle("r", ANYONE, "ann", 4, "steal", {})
        assert (unknown.error, unknown.message) == ("invalid", "unknown operation 'steal'")
        bad = await coordinator.handle("r", ANYONE, "ann", 5, "next", {"sequence": ""})
        assert bad.error == "invalid"
        for op in ("acquire", "renew", "release", "next"):  # read-only: refused, never run
            reply = await coordinator.handle("r", READER, "rita", 6, op, {"name": "x"})
            assert reply.error == "forbidden" and "read-only" in (reply.message or "")
        listed = await coordinator.handle("r", READER, "whoever", 7, "leases", {})
        assert listed == Reply(7, {"leases": []})
        assert coordinator.calls == [
            ("acquire", "r", "ann"),
            ("next", "r", "s"),
            ("acquire", "r", "ann"),
            ("leases", "r", "rita"),  # with a token, its identity counts, not the hello name
        ]

    run(body())


def test_the_shared_policies_claim_grace_limit_and_expiry_hook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[tuple[str, str, str]] = []

    def abandoned(room: str, name: str, agent: str) -> bool:
        asked.append((room, name, agent))
        return True

    coordinator = Recording()
    assert not coordinator._claim_abandoned("r", "claim", "ann", 1e9)  # no hook: never
    coordinator._abandoned = abandoned
    monkeypatch.setattr(crdtdoc.server.coordination, "CLAIM_GRACE_SECONDS", 5.0)
    assert not coordinator._claim_abandoned("r", "claim", "ann", 4.0)  # within the grace
    assert asked == []
    assert coordinator._claim_abandoned("r", "claim", "ann", 6.0)
    assert asked == [("r", "claim", "ann")]

    limit = coordinator._too_many("ann")
    assert limit.code == "limit" and "ann already holds or waits for 2 leases" in str(limit)

    expired: list[tuple[str, str, str]] = []

    async def hook(room: str, name: str, agent: str) -> None:
        expired.append((room, name, agent))
        raise RuntimeError("the hook broke")

    async def body() -> None:
        with_hook = Recording(on_expire=hook)
        with caplog.at_level(logging.ERROR, "crdtdoc.hub.coordination"):
            with_hook._spawn(with_hook._expired("r", "L", "ann"))
            assert len(with_hook._tasks) == 1  # kept referenced while it runs
            await asyncio.gather(*with_hook._tasks)
        assert expired == [("r", "L", "ann")] and not with_hook._tasks
        assert "lease expiry hook failed" in caplog.text  # logged, not raised

    run(body())


def test_find_cycle_describes_the_cycle_through_an_owner() -> None:
    holders = {("r", "L1"): ("a#1", "a"), ("r", "L2"): ("b#1", "b")}
    waits = [(("r", "L2"), "a#1", "a"), (("r", "L1"), "c#1", "c")]
    assert find_cycle("a#1", holders, waits) == []  # a waits for b, who waits for nobody
    waits.append((("r", "L1"), "b#1", "b"))
    cycle = find_cycle("a#1", holders, waits)
    assert cycle == ["a waits for 'L2' held by b", "b waits for 'L1' held by a"]
    assert find_cycle("c#1", holders, waits) == []  # c waits into the cycle, is not on it
    refusal = deadlock_refusal(cycle)
    assert (refusal.code, refusal.details) == ("deadlock", {"cycle": cycle})
    assert str(refusal) == "waiting would deadlock: " + "; ".join(cycle)


def test_both_coordinators_are_coordinators() -> None:
    assert issubclass(LocalCoordinator, Coordinator)
    assert issubclass(SharedCoordinator, Coordinator)
    with pytest.raises(TypeError):
        Coordinator(None, max_leases_per_agent=1, abandoned=None)  # type: ignore[abstract]


@asynccontextmanager
async def local(tmp_path: Path) -> AsyncIterator[LocalCoordinator]:
    committer = SqliteCommitter(SqliteStore(str(tmp_path / "hub.db")))
    committer.start()
    coordinator = LocalCoordinator(committer)
    await coordinator.load()
    try:
        yield coordinator
    finally:
        await coordinator.close()
        await committer.close()


async def acquire(coordinator: Coordinator, agent: str, name: str, wait: float = 0) -> Reply:
    args = {"name": name, "ttl": 30, "wait": wait, "client": 1}
    return await coordinator.handle("r", ANYONE, agent, 1, "acquire", args)


def test_the_local_coordinator_fences_with_the_newest_token_of_the_holder(tmp_path: Path) -> None:
    async def body() -> None:
        async with local(tmp_path) as coordinator:
            assert "never issued" in (coordinator.fence_refusal("r", "L", 1, "ann") or "")
            first = await acquire(coordinator, "ann", "L")
            assert first == Reply(1, {"token": 1, "ttl": 30.0, "holder": "ann"})
            assert coordinator.fence_refusal("r", "L", 1, "ann") is None
            assert "not by bob" in (coordinator.fence_refusal("r", "L", 1, "bob") or "")
            args = {"name": "L", "token": 1, "client": 1}
            released = await coordinator.handle("r", ANYONE, "ann", 2, "release", args)
            assert released == Reply(2, {"released": True})
            assert "not held any more" in (coordinator.fence_refusal("r", "L", 1, "ann") or "")

    run(body())


def test_a_local_wait_that_a_hand_over_turns_into_a_cycle_is_refused_with_it(
    tmp_path: Path,
) -> None:
    """The refusal of a wait failed when a lease changed hands reads as the refusal of one that
    would deadlock at once: code, message and the cycle in the details."""

    async def body() -> None:
        async with local(tmp_path) as coordinator:
            await acquire(coordinator, "a", "L1")
            await acquire(coordinator, "c", "L2")
            b_l1 = asyncio.ensure_future(acquire(coordinator, "b", "L1", wait=10))
            await asyncio.sleep(0.05)
            b_l2 = asyncio.ensure_future(acquire(coordinator, "b", "L2", wait=10))
            await asyncio.sleep(0.05)
            c_l1 = asyncio.ensure_future(acquire(coordinator, "c", "L1", wait=10))
            await asyncio.sleep(0.05)
            args = {"name": "L1", "token": 1, "client": 1}
            await coordinator.handle("r", ANYONE, "a", 2, "release", args)  # L1 goes to b
            refused = await asyncio.wait_for(c_l1, 5)
            cycle = ["c waits for 'L1' held by b", "b waits for 'L2' held by c"]
            assert refused == Reply(
                1, {"cycle": cycle}, "deadlock", "waiting would deadlock: " + "; ".join(cycle)
            )
            assert (await b_l1).result["token"] == 2
            args = {"name": "L2", "token": 1, "client": 1}
            await coordinator.handle("r", ANYONE, "c", 3, "release", args)
            assert (await asyncio.wait_for(b_l2, 5)).result["holder"] == "b"

    run(body())


def test_the_shared_coordinator_never_fences_from_memory() -> None:
    """Across hubs a fence is decided in the commit's transaction: asked at once, it refuses."""
    shared = SharedCoordinator.__new__(SharedCoordinator)  # the check reads no state
    assert "checked in the commit's transaction" in (shared.fence_refusal("r", "L", 1, "a") or "")

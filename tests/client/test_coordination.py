"""`crdtdoc.client.coordination`: a `Lease` over a fake `LeaseHost` that records the requests it
is asked to send. Renewal names the token and the client the lease was taken under; a refused
renewal loses the lease; release runs the hooks first and tells the hub once, even when a hook
fails; the lease renews itself at a third of its TTL. `retry` reruns an attempt that lost a race
(`StaleRead`) up to `attempts` times; `LeaseInfo` is what a real hub lists."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import crdtdoc
from crdtdoc.client.coordination import Lease, LeaseInfo, retry
from crdtdoc.errors import Conflict, Forbidden, LeaseHeld, LeaseLost, NotConnected, StaleRead
from crdtdoc.protocol.requests import Release, Renew
from tests.support.aio import run
from tests.support.hubs import running_hub


class FakeHost:
    """A `LeaseHost` that records each request and answers from `answers` (an exception to
    raise, or nothing: {} is returned)."""

    def __init__(self, client_id: int = 7) -> None:
        self._client_id = client_id
        self.asked: list[Renew | Release] = []
        self.answers: list[Exception | None] = []

    @property
    def client_id(self) -> int:
        return self._client_id

    async def ask(self, request: Renew | Release, timeout: float = 30.0) -> dict[str, Any]:
        self.asked.append(request)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return {}


def test_renew_names_the_token_and_the_acquiring_client_and_keeps_the_new_ttl() -> None:
    async def body() -> None:
        host = FakeHost(client_id=7)
        lease = Lease(host, "deploy", token=3, ttl=30.0)
        host._client_id = 99  # the replica moved on to a fresh id: the lease is still client 7's
        await lease.renew(ttl=12.0)
        assert host.asked == [Renew("deploy", 3, 12.0, 7)] and lease.ttl == 12.0
        await lease.renew()
        assert host.asked[-1] == Renew("deploy", 3, 12.0, 7)
        assert lease.held and repr(lease) == "Lease('deploy', token=3, held)"
        await lease.release()

    run(body())


@pytest.mark.parametrize("refusal", [LeaseLost("expired"), Forbidden("bob holds it")])
def test_a_refused_renewal_loses_the_lease_and_release_then_tells_the_hub_nothing(
    refusal: Exception,
) -> None:
    async def body() -> None:
        host = FakeHost()
        lease = Lease(host, "deploy", token=3, ttl=30.0)
        host.answers = [refusal]
        with pytest.raises(type(refusal)):
            await lease.renew()
        assert lease.lost and not lease.held and "lost" in repr(lease)
        with pytest.raises(LeaseLost, match="'deploy' is lost"):
            await lease.renew()
        await lease.release()
        assert host.asked == [Renew("deploy", 3, 30.0, 7)]  # no release sent for a lost lease

    run(body())


def test_release_runs_the_hooks_first_and_frees_the_lease_once_even_if_a_hook_fails() -> None:
    async def body() -> None:
        host = FakeHost()
        events: list[str] = []

        async def drop_claim() -> None:
            events.append(f"hook, {len(host.asked)} asked")
            raise RuntimeError("the task list refused")

        lease = Lease(host, "task-1", token=5, ttl=30.0)
        lease.on_release(drop_claim)
        with pytest.raises(RuntimeError):
            await lease.release()
        assert events == ["hook, 0 asked"]
        assert host.asked == [Release("task-1", 5, 7)]
        await lease.release()  # twice: nothing more
        assert host.asked == [Release("task-1", 5, 7)] and lease.released and not lease.held
        with pytest.raises(LeaseLost, match="released"):
            await lease.renew()

    run(body())


def test_a_held_lease_renews_itself_at_a_third_of_its_ttl_until_released() -> None:
    async def body() -> None:
        host = FakeHost()
        host.answers = [NotConnected("link down")]  # the first renewal fails: tried again
        async with Lease(host, "l", token=1, ttl=0.15) as lease:
            await asyncio.sleep(0.3)  # a period every 0.05 s
            assert lease.held
        renewals = [r for r in host.asked if isinstance(r, Renew)]
        assert len(renewals) >= 3 and host.asked[-1] == Release("l", 1, 7)
        count = len(host.asked)
        await asyncio.sleep(0.12)
        assert len(host.asked) == count  # released: no more renewals

    run(body())


def test_a_lease_stops_renewing_once_the_hub_says_it_is_lost() -> None:
    async def body() -> None:
        host = FakeHost()
        host.answers = [LeaseLost("expired")]
        lease = Lease(host, "l", token=1, ttl=0.06)
        await asyncio.sleep(0.1)
        assert lease.lost and len(host.asked) == 1
        await asyncio.sleep(0.06)
        assert len(host.asked) == 1

    run(body())


def test_retry_reruns_a_lost_race_up_to_the_attempts_then_raises() -> None:
    async def body() -> None:
        tries: list[int] = []

        async def wins_third() -> str:
            tries.append(1)
            if len(tries) < 3:
                raise Conflict("bob wrote first", [])
            return "done"

        assert await retry(wins_third, attempts=5, pause=0.001) == "done" and len(tries) == 3
        tries.clear()

        async def always_stale() -> str:
            tries.append(1)
            raise StaleRead("stale", [])

        with pytest.raises(StaleRead):
            await retry(always_stale, attempts=4, pause=0.001)
        assert len(tries) == 4
        tries.clear()

        async def held() -> str:
            tries.append(1)
            raise LeaseHeld("held by bob", "bob")

        with pytest.raises(LeaseHeld):  # not a lost race: no retry
            await retry(held, attempts=4, pause=0.001)
        assert len(tries) == 1

    run(body())


def test_lease_info_is_what_a_real_hub_lists_its_token_shown_to_the_holder_only(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db") as hub:
            url = hub.url + "/r"
            async with (
                crdtdoc.connect(url, agent="alice") as a,
                crdtdoc.connect(url, agent="b") as b,
            ):
                lease = await a.acquire("deploy", ttl=30)
                [mine] = await a.leases()
                [theirs] = await b.leases()
                assert mine == LeaseInfo("deploy", "alice", lease.token, mine.expires_in, [])
                assert theirs.token is None and theirs.holder == "alice"
                assert 0 < mine.expires_in <= 30
                await lease.release()
                assert await b.leases() == []
                assert (await b.acquire("deploy")).token > lease.token  # freed, fenced anew

    run(body())

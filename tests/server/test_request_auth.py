"""Coordination requests are authorized (issue 15): read-only tokens take no leases, renew or
release none and draw no numbers; only a lease's holder renews or releases it; `leases` shows no
one another holder's token; a fence passes only with the newest token actually issued.

Every attack runs against one hub and against two hubs sharing one PostgreSQL database (the
"postgres" cases), each agent on a different hub there, with real tokens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import crdtdoc
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.server.coordination_rules import fence_refusal
from crdtdoc.server.hub import Hub
from crdtdoc.server.shared_coordination import SharedCoordinator
from crdtdoc.tokens import create_token
from tests.support.aio import run
from tests.support.hubs import running_cluster, running_hub

SECRET = b"test-secret-of-32-bytes-exactly!"
FAST = Backoff(initial=0.05, maximum=0.3)
BACKENDS = ["one hub", "postgres"]


@contextlib.asynccontextmanager
async def two_hubs(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    secret: bytes | None = SECRET,
    **settings: Any,
) -> AsyncIterator[list[Hub]]:
    """Two hubs on one PostgreSQL database, or one hub listed twice."""
    if backend == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        async with running_cluster(
            pg_url, None, 2, secret=secret, lease_poll_seconds=0.05, **settings
        ) as hubs:
            yield hubs
    else:
        async with running_hub(tmp_path / "hub.db", secret=secret, **settings) as hub:
            yield [hub, hub]


async def agent(
    hub: Hub, room: str, name: str, *, read_only: bool = False, anonymous: bool = False
) -> crdtdoc.ConnectedReplica:
    """A connected agent with a real token for `name` (read-only if asked), or, `anonymous`, with
    no token at all: then it only names itself in hello (for hubs without a secret)."""
    tok = None if anonymous else create_token(SECRET, name, read_only=read_only)
    replica = crdtdoc.connect(f"{hub.url}/{room}", agent=name, token=tok, backoff=FAST)
    await replica.start()
    return replica


async def request(
    replica: crdtdoc.ConnectedReplica, op: str, **args: Any
) -> dict[str, Any]:  # a raw request, as a hostile agent sends it
    return await replica._request(op, args)


def test_a_read_only_token_takes_no_lease_renews_and_releases_none_and_draws_no_number(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            reader = await agent(hubs[1], "r", "reader", read_only=True)
            held = await bob.acquire("deploy", ttl=5)
            with pytest.raises(crdtdoc.Forbidden, match="read-only token: it may not take"):
                await reader.acquire("build", ttl=5)
            with pytest.raises(crdtdoc.Forbidden, match="read-only"):
                await reader.acquire("deploy", ttl=5, wait=1)
            with pytest.raises(crdtdoc.Forbidden, match="may not renew"):
                await request(reader, "renew", name="deploy", token=held.token, ttl=3600)
            with pytest.raises(crdtdoc.Forbidden, match="may not release"):
                await request(reader, "release", name="deploy", token=held.token)
            with pytest.raises(crdtdoc.Forbidden, match="may not draw numbers"):
                await reader.next_number("invoice")
            # Reading is allowed: the lease is still bob's, untouched, and no number was used.
            (info,) = await reader.leases()
            assert (info.name, info.holder) == ("deploy", "bob")
            assert 4 < info.expires_in <= 5
            assert await bob.next_number("invoice") == 1
            await held.renew()
            await held.release()
            assert await reader.leases() == []
            await asyncio.gather(bob.close(), reader.close())

    run(body())


def test_only_the_holder_renews_or_releases_a_lease_even_with_its_token(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            mallory = await agent(hubs[1], "r", "mallory")
            dead = await bob.acquire("deploy", ttl=1.0)
            dead._renewer.cancel()  # bob died holding it
            # mallory knows the token (a task claim publishes it; tokens are small numbers).
            with pytest.raises(crdtdoc.Forbidden, match="held by bob, not by mallory") as exc:
                await request(mallory, "renew", name="deploy", token=dead.token, ttl=3600)
            assert "renew" in str(exc.value)
            with pytest.raises(crdtdoc.Forbidden, match="only its holder may release"):
                await request(mallory, "release", name="deploy", token=dead.token)
            with pytest.raises(crdtdoc.LeaseHeld, match="held by bob"):
                await mallory.acquire("deploy", ttl=5)
            # The renewal did not happen: the lease runs out on time and mallory gets it then.
            loop = asyncio.get_running_loop()
            started = loop.time()
            taken = await mallory.acquire("deploy", ttl=5, wait=5)
            assert loop.time() - started < 2.0 and taken.token > dead.token
            # Now bob's old token is simply lost to him; mallory's lease is hers alone.
            with pytest.raises(crdtdoc.LeaseLost):
                await dead.renew()
            with pytest.raises(crdtdoc.Forbidden, match="held by mallory, not by bob"):
                await request(bob, "release", name="deploy", token=taken.token)
            await taken.release()
            await asyncio.gather(bob.close(), mallory.close())

    run(body())


def test_leases_shows_a_lease_token_to_its_holder_only(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            mallory = await agent(hubs[1], "r", "mallory")
            reader = await agent(hubs[1], "r", "reader", read_only=True)
            held = await bob.acquire("deploy", ttl=5)
            mine = await mallory.acquire("build", ttl=5)
            for someone in (mallory, reader):
                listed = {info.name: info for info in await someone.leases()}
                assert listed["deploy"].holder == "bob"
                assert listed["deploy"].token is None, "bob's lease token leaked"
                assert 4 < listed["deploy"].expires_in <= 5
            listed = {info.name: info for info in await bob.leases()}
            assert listed["deploy"].token == held.token
            assert (listed["build"].holder, listed["build"].token) == ("mallory", None)
            assert {i.name: i.token for i in await mallory.leases()}["build"] == mine.token
            await held.release()
            await mine.release()
            await asyncio.gather(bob.close(), mallory.close(), reader.close())

    run(body())


@pytest.mark.parametrize("backend_", BACKENDS)
def test_a_fenced_commit_passes_only_with_the_newest_token_actually_issued(
    backend_: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend_, tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            held = await bob.acquire("schema", ttl=5)
            for name, token in (
                ("schema", 10**9),  # never issued
                ("schema", held.token + 1),  # the next one: not issued yet
                ("never-leased", 1),  # no token was ever issued for this name
                ("never-leased", 0),
            ):
                forged = crdtdoc.Lease(bob, name, token, 5.0)
                forged._renewer.cancel()
                with pytest.raises(crdtdoc.FencedOut, match="never issued"):
                    async with bob.commit(fence=forged):
                        bob.document("d").insert(0, f"{name} {token}\n")
            assert bob.document("d").read() == ""
            async with bob.commit(fence=held):
                bob.document("d").insert(0, "with the real token\n")
            assert bob.document("d").read() == "with the real token\n"
            await held.release()
            await bob.close()

    run(body())


def test_the_shared_fence_check_refuses_tokens_never_issued(
    tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs("postgres", tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            first = await bob.acquire("schema", ttl=5)
            await first.release()
            held = await bob.acquire("schema", ttl=5)
            coordinator = hubs[1].coordinator
            assert isinstance(coordinator, SharedCoordinator)
            assert await coordinator.fence_ok("r", "schema", held.token, "bob") == (True, "")
            ok, message = await coordinator.fence_ok("r", "schema", held.token, "mallory")
            assert not ok and "held by bob, not by mallory" in message
            for name, token, why in (
                ("schema", 10**9, "never issued"),
                ("schema", held.token + 1, "never issued"),
                ("schema", first.token, "older token"),
                ("never-leased", 1, "never issued"),
            ):
                ok, message = await coordinator.fence_ok("r", name, token, "bob")
                assert not ok and why in message, (name, token, message)
            await held.release()
            await bob.close()

    run(body())


def test_without_a_secret_the_holder_is_the_hello_name_and_client(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_, secret=None) as hubs:
            bob = await agent(hubs[0], "r", "bob", anonymous=True)
            other = await agent(hubs[1], "r", "mallory", anonymous=True)
            twin = await agent(hubs[1], "r", "bob", anonymous=True)  # the same name, by mistake
            held = await bob.acquire("deploy", ttl=5)
            with pytest.raises(crdtdoc.Forbidden, match="held by bob, not by mallory"):
                await request(other, "renew", name="deploy", token=held.token, ttl=3600)
            with pytest.raises(crdtdoc.Forbidden, match="another client"):
                await request(
                    twin, "release", name="deploy", token=held.token, client=twin.client_id
                )
            # The client names the client id it acquired under, so a twin's lease object with
            # bob's token is refused, and marks itself lost (it stops renewing).
            borrowed = crdtdoc.Lease(twin, "deploy", held.token, 5.0)
            borrowed._renewer.cancel()
            with pytest.raises(crdtdoc.Forbidden, match="another client of bob"):
                await borrowed.renew()
            assert borrowed.lost and not borrowed.held
            assert [i.token for i in await other.leases()] == [None]
            await held.renew()  # the holder itself: fine
            await held.release()
            assert await other.leases() == []
            await asyncio.gather(bob.close(), other.close(), twin.close())

    run(body())


def test_an_honest_holder_keeps_renewing_and_releases_its_own_lease(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_) as hubs:
            bob = await agent(hubs[0], "r", "bob")
            alice = await agent(hubs[1], "r", "alice")
            held = await bob.acquire("deploy", ttl=0.6)
            await asyncio.sleep(1.3)  # past two TTLs: the lease renewed itself
            assert held.held
            with pytest.raises(crdtdoc.LeaseHeld):
                await alice.acquire("deploy", ttl=5)
            again = await bob.acquire("deploy", ttl=5)  # acquiring one's own lease extends it
            assert again.token == held.token
            again._renewer.cancel()
            await held.release()
            assert (await alice.acquire("deploy", ttl=5)).token == held.token + 1
            await asyncio.gather(bob.close(), alice.close())

    run(body())


@pytest.mark.parametrize(
    ("token", "newest", "why"),
    [
        (3, 3, None),
        (2, 3, "changed hands after fencing token 2 (now held by bob)"),
        (4, 3, "fencing token 4 was never issued"),
        (10**9, 3, "never issued"),
        (0, 3, "never issued"),
        (-1, 3, "never issued"),
        (0, 0, "never issued for lease 'schema' (it was never taken)"),
        (1, 0, "never taken"),
    ],
)
def test_fence_refusal_passes_the_newest_issued_token_only(
    token: int, newest: int, why: str | None
) -> None:
    refusal = fence_refusal("schema", token, newest, "bob", "bob")
    if why is None:
        assert refusal is None
    else:
        assert refusal is not None and why in refusal


@pytest.fixture
def request_(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """The pytest request (named apart from the `request` helper above)."""
    return request


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_an_agent_holds_at_most_max_leases_per_agent(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    """Each lease costs the hub memory and a timer until it expires (70,000 one-hour leases once
    took 480 MB): past the limit `acquire` is answered `limit`, others are unaffected."""

    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_, max_leases_per_agent=3) as hubs:
            mallory = await agent(hubs[0], "r", "mallory")
            bob = await agent(hubs[1], "r", "bob")
            mine = [await mallory.acquire(f"l{i}", ttl=60) for i in range(3)]
            with pytest.raises(crdtdoc.CrdtdocError, match="max-leases-per-agent"):
                await mallory.acquire("l3", ttl=60)
            with pytest.raises(crdtdoc.CrdtdocError, match="max-leases-per-agent"):
                await mallory.acquire("l3", ttl=60, wait=1)  # waiting counts too
            held = await bob.acquire("l3", ttl=60)  # others are not limited by her
            await mine[0].release()
            again = await mallory.acquire("l4", ttl=60)  # under the limit again
            assert again.token >= 1 and held.token >= 1
            await asyncio.gather(mallory.close(), bob.close())

    run(body())


def test_a_token_scoped_to_other_artifacts_claims_no_task(
    backend: str, tmp_path: Path, request_: pytest.FixtureRequest
) -> None:
    """A claim is a lease and a record in the task list: a token that may not change the list
    must not take the lease either (it would lock the task with no claim anyone can see)."""

    async def body() -> None:
        async with two_hubs(backend, tmp_path, request_) as hubs:
            scoped_token = create_token(SECRET, "art", artifacts=["notes"])
            scoped = crdtdoc.connect(
                f"{hubs[0].url}/r", agent="art", token=scoped_token, backoff=FAST
            )
            await scoped.start()
            alice = await agent(hubs[1], "r", "alice")
            try:
                with pytest.raises(crdtdoc.Forbidden, match="may not claim tasks of 'board'"):
                    await request(scoped, "acquire", name="task/board/t1", ttl=5)
                lease = await scoped.acquire("notes-lock", ttl=5)  # other leases: as before
                await lease.release()
                task = alice.tasks("board").add("ship")
                claim = await alice.claim_task("board", task, ttl=5)  # nobody locked it
                await claim.release()
            finally:
                for replica in (scoped, alice):
                    await replica.close()

    run(body())


@pytest.mark.parametrize(
    ("holder", "writer", "why"),
    [
        ("bob", "bob", None),
        (None, "bob", "not held any more"),  # released, or ran out: it fenced writes on
        ("bob", "mallory", "held by bob, not by mallory"),  # another's fence: it passed
    ],
)
def test_a_fence_passes_only_its_holder_while_it_holds_the_lease(
    holder: str | None, writer: str, why: str | None
) -> None:
    refusal = fence_refusal("deploy", 3, 3, holder, writer)
    assert refusal is None if why is None else (refusal is not None and why in refusal)

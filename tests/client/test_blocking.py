"""The blocking replica's guarded writes: decided by the hub, waited for, undone when refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtdoc.client.blocking import BlockingReplica, connect_blocking
from crdtdoc.client.coordination import Fence
from crdtdoc.errors import (
    Conflict,
    CrdtdocError,
    FencedOut,
    NotConnected,
    TooLarge,
    UsageError,
)
from tests.support.hubs import HubProcess, free_port, hub_in_thread


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    with hub_in_thread(tmp_path / "hub.db") as url:
        yield url + "/room"


def _pair(hub: str) -> tuple[BlockingReplica, BlockingReplica]:
    return connect_blocking(hub, agent="alice"), connect_blocking(hub, agent="bob")


def test_the_hub_refuses_a_guarded_write_raced_by_one_this_replica_had_not_seen(
    hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = _pair(hub)
    with alice, bob:
        alice.spec("api").set("getUser", "(id) -> User")
        alice.flush()
        bob.wait_for(alice.version())
        read = alice.version()
        bob.spec("api").set("getUser", "(id: int) -> User")
        bob.flush()
        alice.wait_for(bob.version())
        # The race: bob's write reaches the hub after alice checked her own copy.
        monkeypatch.setattr(alice, "_check_fresh", lambda expect, on: None)
        with pytest.raises(Conflict, match="bob"), alice.commit(expect=read, on=["api"]):
            alice.spec("api").set("listUsers", "() -> list[User]")
        assert "listUsers" not in alice.spec("api").members()  # undone here too
        assert alice.spec("api").get("getUser") == "(id: int) -> User"
        alice.flush()
        bob.poll()
        assert "listUsers" not in bob.spec("api").members()
        # Unraced, the same write is applied by the hub once commit returns.
        with alice.commit(expect=alice.version(), on=["api"]):
            alice.spec("api").set("listUsers", "() -> list[User]")
        bob.wait_for(alice.version(), timeout=10)
        assert bob.spec("api").get("listUsers") == "() -> list[User]"


def test_a_fenced_write_with_a_superseded_token_is_refused_and_undone(hub: str) -> None:
    alice, bob = _pair(hub)
    with alice, bob:
        first = int(alice.request("acquire", {"name": "deploy", "ttl": 30})["token"])
        with alice.commit(fence=Fence("deploy", first)):
            alice.document("log").append("alice deploys\n")
        alice.request("release", {"name": "deploy", "token": first})
        second = int(bob.request("acquire", {"name": "deploy", "ttl": 30})["token"])
        assert second > first
        with pytest.raises(FencedOut), alice.commit(fence=Fence("deploy", first)):
            alice.document("log").append("alice, paused too long, deploys again\n")
        assert alice.document("log").read() == "alice deploys\n"
        with bob.commit(fence=Fence("deploy", second)):
            bob.document("log").append("bob deploys\n")
        alice.wait_for(bob.version(), timeout=10)
        assert alice.document("log").read() == "alice deploys\nbob deploys\n"


def test_an_exception_in_the_block_undoes_it_and_nesting_is_refused(hub: str) -> None:
    alice, bob = _pair(hub)
    with alice, bob:
        with pytest.raises(ValueError), alice.commit():
            alice.document("d").append("half a change")
            raise ValueError("the agent changed its mind")
        assert alice.document("d").read() == ""
        with pytest.raises(CrdtdocError, match="inside"), alice.transaction(), alice.commit():
            pass


def test_a_write_larger_than_the_hub_accepts_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    with (
        hub_in_thread(tmp_path / "small.db", max_message_bytes=64 * 1024) as url,
        connect_blocking(url + "/room", agent="alice") as alice,
    ):
        alice.document("d").write("kept\n")
        alice.flush()
        assert alice.max_message_bytes == 64 * 1024  # the hub said so in its welcome
        with pytest.raises(TooLarge, match="at most 65,536") as refused, alice.commit():
            alice.document("d").append("x" * 100_000)
        assert refused.value.code == 1009
        assert alice.document("d").read() == "kept\n"  # nothing was written
        with alice.commit():  # and the replica goes on: a smaller write passes
            alice.document("d").append("x" * 1000)
        alice.flush(timeout=10)
        assert alice.connected


def test_a_hub_that_is_down_fails_after_the_connect_timeout_not_the_open_timeout() -> None:
    import time

    from crdtdoc.errors import NotConnected

    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(NotConnected, match=r"cannot reach .* within 0\.5 s") as failed:
        connect_blocking(
            f"ws://127.0.0.1:{port}/r", agent="alice", open_timeout=30, connect_timeout=0.5
        )
    assert time.monotonic() - started < 5 and failed.value.reached is False


def test_edits_made_offline_past_the_hub_s_message_limit_arrive_when_it_comes_up(
    tmp_path: Path,
) -> None:
    """The step 2 that carries them is sent in slices under the hub's limit: as one message,
    the hub closed the link over it at every reconnect, for ever."""
    import random

    port = free_port()
    url = f"ws://127.0.0.1:{port}/r"
    rng = random.Random(3)
    with connect_blocking(url, agent="alice", wait_synced=False) as alice:
        doc = alice.document("draft")
        for n in range(150):  # about 300 KB, written while the hub is down
            doc.insert(rng.randint(0, len(doc)), f"{n} " + "lorem ipsum " * 160 + "\n")
        hub = HubProcess(tmp_path / "hub.db", port, "--max-message-bytes", "65536")
        hub.start()
        try:
            alice.flush(timeout=60)
            with connect_blocking(url, agent="bob") as bob:
                assert bob.document("draft").read() == doc.read()
        finally:
            hub.stop()


def test_the_hubs_record_reads_blocking_and_a_closed_replica_says_so(hub: str) -> None:
    alice = connect_blocking(hub, agent="alice")
    with alice:
        alice.document("design").write("Intro.\n")
        alice.flush(timeout=10)
        record = alice.provenance().record_of(alice.client_id, 1)
        assert record is not None and not record.announced
        with pytest.raises(UsageError, match="timeout"):
            alice.provenance(timeout="x")  # type: ignore[arg-type]
    with pytest.raises(NotConnected, match="closed"):
        alice.provenance()
    with pytest.raises(NotConnected, match="closed"):
        alice.request("next", {"sequence": "s"})

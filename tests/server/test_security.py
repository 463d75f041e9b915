"""The hub against hostile and mistaken agents: authentication, read-only and scoped tokens,
frozen specs, impersonation, clock poisoning, rate and size limits."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import crdtdoc
from crdtdoc import Replica
from crdtdoc.protocol.awareness import AwarenessEntry, encode_awareness
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.extension import Hello, Reply, Request, decode_extension, encode_extension
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Extension,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.tokens import create_token
from tests.support.aio import run
from tests.support.hubs import running_hub
from tests.test_updates import _gc_struct, _string_item, _update

SECRET = b"test-secret-of-32-bytes-exactly!"
FAST = Backoff(initial=0.05, maximum=0.3)


def token(agent: str, **options: object) -> str:
    return create_token(SECRET, agent, **options)  # type: ignore[arg-type]


async def raw(url: str, agent: str, **options: object) -> tuple[ClientConnection, Replica]:
    """A bare client with a token for `agent`: syncs from empty, returns the hub's content in a
    replica named like its token."""
    ws = await ws_connect(f"{url}?token={token(agent, **options)}", max_size=None)
    replica = Replica(agent)
    await ws.send(encode_message(SyncStep1(b"\x00")))
    while True:
        message = decode_message(await ws.recv())  # type: ignore[arg-type]
        if isinstance(message, SyncStep2):
            replica.apply_update(message.update)
            return ws, replica


async def closed_with(ws: ClientConnection) -> tuple[int | None, str, list[str]]:
    """Reads until the hub closes; returns the close code, reason and auth messages seen."""
    denied = []
    with pytest.raises(ConnectionClosed):
        while True:
            message = decode_message(await ws.recv())  # type: ignore[arg-type]
            if isinstance(message, Auth):
                denied.append(message.reason)
    return ws.close_code, ws.close_reason or "", denied


def test_no_room_opens_without_a_valid_token(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/secret-room"
            for tok, code, reason in (
                (None, 4401, "needs a token: pass --token (or CRDTDOC_TOKEN)"),
                ("garbage", 4401, "not a crdtdoc token"),
                (create_token(b"other-secret-also-32-bytes-long!", "a"), 4401, "signature"),
                (token("a", rooms="public-*"), 4403, "does not allow room 'secret-room'"),
            ):
                suffix = f"?token={tok}" if tok else ""
                ws = await ws_connect(url + suffix)
                got, why, _ = await closed_with(ws)
                assert (got, reason in why) == (code, True), (got, why)
            assert hub.rooms == {} and hub.committer.commits == 0  # nothing loaded or stored
            # The Authorization header works as well as ?token=.
            headers = {"Authorization": f"Bearer {token('a')}"}
            ws = await ws_connect(url, additional_headers=headers)
            await ws.send(encode_message(SyncStep1(b"\x00")))
            assert isinstance(decode_message(await ws.recv()), SyncStep1)  # type: ignore[arg-type]
            await ws.close()

    run(body())


def test_a_refusal_at_connect_arrives_at_once_whatever_the_client_sent_first(
    tmp_path: Path,
) -> None:
    """A crdtdoc client sends hello, presence and sync step 1 before reading: with the hub's
    small receive queue, its refusal once waited out the close timeout (10 s) behind them."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            ws = await ws_connect(f"{hub.url}/other?token={token('a', rooms='project-*')}")
            with contextlib.suppress(ConnectionClosed):
                for _ in range(20):
                    await ws.send(encode_message(SyncStep1(b"\x00" + b"\x00" * 20_000)))
            async with asyncio.timeout(5):
                await ws.wait_closed()
            assert ws.close_code == 4403 and "does not allow room 'other'" in (
                ws.close_reason or ""
            )

    run(body())


def test_a_read_only_agent_reads_but_cannot_write(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/r"
            async with crdtdoc.connect(url, agent="alice", token=token("alice")) as alice:
                alice.document("d").insert(0, "hello")
                await alice.flush()
                ws, replica = await raw(url, "reader", read_only=True)
                assert replica.document("d").read() == "hello"  # sync and read: fine
                presence = AwarenessEntry(replica.client_id, 1, '{"user":{"name":"r"}}')
                await ws.send(encode_message(Awareness(encode_awareness([presence]))))
                await asyncio.sleep(0.1)
                assert alice.peers() == []  # not relayed
                replica.document("d").insert(5, " world")
                await ws.send(encode_message(SyncUpdate(replica.encode_update())))
                code, reason, denied = await closed_with(ws)
                assert code == 4403 and "read-only" in reason
                assert any("read-only" in d for d in denied)
                await asyncio.sleep(0.05)
                assert alice.document("d").read() == "hello"

    run(body())


def test_scoped_tokens_and_frozen_specs_refuse_whole_updates(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/s"
            async with crdtdoc.connect(url, agent="lead", token=token("lead")) as lead:
                lead.spec("api").set("ping", "() -> str")
                lead.tasks("backlog").add("t")
                await lead.flush()
                writer = crdtdoc.connect(
                    url,
                    agent="writer",
                    token=token("writer", artifacts=["design"]),
                    backoff=FAST,
                )
                await writer.start()
                writer.document("design").insert(0, "ok: in scope")
                await writer.flush()
                with writer.transaction():  # one update touching design and api: refused whole
                    writer.document("design").append(" and more")
                    writer.spec("api").set("pong", "() -> str")
                with pytest.raises(crdtdoc.Refused, match="may change only design") as refused:
                    await writer.flush(timeout=10)
                assert refused.value.code == 4403
                await writer.wait_for(lead.version(), timeout=10)
                # The writer's replica was reset to the hub's state: nothing diverged.
                assert writer.document("design").read() == "ok: in scope"
                assert writer.spec("api").members() == ["ping"]
                await lead.wait_for(writer.version(), timeout=10)
                assert lead.document("design").read() == "ok: in scope"
                assert lead.spec("api").members() == ["ping"]
                # Frozen specs refuse writes at the hub, even from a replica that did not see
                # the freeze (here: a raw client writing concurrently).
                ws, stale = await raw(url, "other")
                lead.spec("api").freeze()
                await lead.flush()
                stale.spec("api").set("late", "() -> None")
                await ws.send(encode_message(SyncUpdate(stale.encode_update())))
                code, reason, _ = await closed_with(ws)
                assert code == 4403 and "spec 'api' is frozen" in reason
                assert "late" not in lead.spec("api").members()
                await writer.close()

    run(body(), timeout=90)


def test_impersonation_and_clock_poisoning_fail_and_the_victim_keeps_syncing(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/p"
            alice = crdtdoc.connect(url, agent="alice", token=token("alice"), backoff=FAST)
            await alice.start()
            async with crdtdoc.connect(url, agent="bob", token=token("bob")) as bob:
                alice.document("d").insert(0, "alice 1;")
                await alice.flush()
                victim, clock = alice.client_id, alice.version().clocks[alice.client_id]
                attacks = {
                    "content under alice's id": _update(victim, clock, _string_item(b"forged")),
                    "huge GC under alice's id": _update(
                        victim, clock, _gc_struct(2**32 - 1 - clock)
                    ),
                }
                for name, update in attacks.items():
                    ws, _ = await raw(url, "mallory")
                    await ws.send(encode_message(SyncUpdate(update)))
                    code, reason, _ = await closed_with(ws)
                    assert code == 4403 and "belongs to alice" in reason, name
                # Registering a name other than one's token's: refused.
                mallory = Replica("alice")  # claims to be alice in the registry
                mallory.document("d").insert(0, "x")
                ws, _ = await raw(url, "mallory")
                await ws.send(encode_message(SyncUpdate(mallory.encode_update())))
                code, reason, _ = await closed_with(ws)
                assert code == 4403 and "attribution refused" in reason
                # A huge GC under the attacker's own id poisons only itself.
                ws, own = await raw(url, "mallory")
                await ws.send(
                    encode_message(SyncUpdate(_update(own.client_id, 0, _gc_struct(2**31))))
                )
                await asyncio.sleep(0.1)
                await ws.close()
                # The victim's later edits still reach everyone.
                alice.document("d").append("alice 2;")
                await alice.flush()
                await bob.wait_for(alice.version(), timeout=10)
                assert bob.document("d").read() == "alice 1;alice 2;"
                assert {c.agent for c in bob.changes_since(None)} == {"alice"}
            await alice.close()

    run(body(), timeout=90)


def test_rate_connection_and_size_limits_close_with_their_codes(tmp_path: Path) -> None:
    async def body() -> None:
        settings = dict(
            secret=SECRET,
            updates_per_second=20.0,
            max_connections_per_identity=2,
            max_room_bytes=200_000,
        )
        async with running_hub(tmp_path / "hub.db", **settings) as hub:
            url = hub.url + "/l"
            async with crdtdoc.connect(url, agent="calm", token=token("calm")) as calm:
                flood, replica = await raw(url, "flood")
                for i in range(200):
                    replica.document("d").insert(0, f"{i};")
                    try:
                        await flood.send(encode_message(SyncUpdate(replica.encode_update())))
                    except ConnectionClosed:
                        break
                code, reason, _ = await closed_with(flood)
                assert code == 4429 and "updates per second" in reason
                first, _ = await raw(url, "busy")
                second, _ = await raw(url, "busy")
                third = await ws_connect(url + "?token=" + token("busy"))
                code, reason, _ = await closed_with(third)
                assert code == 4429 and "too many connections for busy" in reason
                await first.close()
                await second.close()
                big, replica = await raw(url, "big")
                replica.document("d").insert(0, "x" * 300_000)
                await big.send(encode_message(SyncUpdate(replica.encode_update())))
                code, reason, _ = await closed_with(big)
                assert code == 4413 and "would exceed" in reason
                calm.document("c").insert(0, "still fine")  # everyone else carries on
                await calm.flush()

    run(body(), timeout=90)


def test_agent_names_are_the_tokens(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = hub.url + "/n"
            liar = crdtdoc.connect(url, agent="not-bob", token=token("bob"), backoff=FAST)
            await liar.start()
            liar.document("d").insert(0, "hi")
            with pytest.raises(crdtdoc.Refused, match="attribution refused"):
                await liar.flush(timeout=10)
            await liar.close()

    run(body())


def test_without_tokens_each_connection_has_its_own_rate(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", updates_per_second=20.0) as hub:
            url = hub.url + "/anon"
            agents = [crdtdoc.connect(url, agent=f"a{i}") for i in range(3)]
            for a in agents:
                await a.start()
            for i in range(30):  # 90 updates from one address: more than one bucket's burst
                for a in agents:
                    a.document("d").insert(0, f"{a.agent}{i};")
                await asyncio.sleep(0.001)
            for a in agents:
                await a.flush(timeout=10)  # none was rate limited
                assert a.refused is None
            for a in agents:
                await a.close()

    run(body())


def test_echoed_presence_does_not_count_against_a_client(tmp_path: Path) -> None:
    """Stock y-websocket providers re-send every presence change they receive; in a big room
    that is many messages a second, none of them the client's own. A client's own presence
    faster than the rate is coalesced (the newest state waits), never a reason to close."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", awareness_per_second=2.0) as hub:
            url = hub.url + "/echo"
            async with crdtdoc.connect(url, agent="alice") as alice:
                ws, replica = await raw(url, "echo")
                for _ in range(100):  # alice's presence, echoed back by a stock client
                    entry = AwarenessEntry(alice.client_id, 1, '{"agent":"alice"}')
                    await ws.send(encode_message(Awareness(encode_awareness([entry]))))
                await asyncio.sleep(0.1)
                await ws.send(encode_message(SyncStep1(b"\x00")))
                while not isinstance(decode_message(await ws.recv()), SyncStep2):  # type: ignore[arg-type]
                    pass  # still connected
                for clock in range(1, 10):  # its own presence, too often: coalesced
                    entry = AwarenessEntry(replica.client_id, clock, f'{{"agent":"echo{clock}"}}')
                    await ws.send(encode_message(Awareness(encode_awareness([entry]))))
                # Not closed (stock clients never come back after 4429), and the newest state
                # reaches the others once the rate allows.
                for _ in range(100):
                    seen = {p.client_id: p.state for p in alice.peers()}
                    if seen.get(replica.client_id, {}).get("agent") == "echo9":
                        break
                    await asyncio.sleep(0.05)
                assert seen.get(replica.client_id, {}).get("agent") == "echo9", seen
                await ws.send(encode_message(SyncStep1(b"\x00")))
                while not isinstance(decode_message(await ws.recv()), SyncStep2):  # type: ignore[arg-type]
                    pass  # still connected

    run(body())


def test_an_agent_faster_than_the_rate_limit_is_slowed_down_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """4429 refuses no content: the client keeps its edits, pauses, and sends the backlog."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET, updates_per_second=20.0) as hub:
            url = hub.url + "/fast"
            async with (
                crdtdoc.connect(url, agent="typist", token=token("typist"), backoff=FAST) as typist,
                crdtdoc.connect(url, agent="reader", token=token("reader")) as reader,
            ):
                for i in range(300):  # far past 20/s (bursts of 40)
                    typist.document("d").append(f"{i};")
                    await asyncio.sleep(0)
                await typist.flush(timeout=30)
                await reader.wait_for(typist.version(), timeout=30)
                expected = "".join(f"{i};" for i in range(300))
                assert reader.document("d").read() == expected
                assert typist.refused is None and typist.connects >= 2  # slowed, not reset

    run(body(), timeout=60)


def test_coordination_requests_over_the_rate_are_answered_not_queued(tmp_path: Path) -> None:
    """Each request may cost a store transaction: past `--requests-per-second` an identity's
    requests are answered `rate_limited` at once (nothing done, the link stays); the crdtdoc
    client sends such a request again after a pause, so an honest fast agent is only slowed."""

    async def body() -> None:
        async with running_hub(tmp_path / "hub.db", secret=SECRET, requests_per_second=5) as hub:
            url = hub.url + "/n"
            ws, _ = await raw(url, "greedy")
            await ws.send(encode_message(encode_extension(Hello("greedy"))))
            for i in range(40):
                request = Request(i + 1, "next", {"sequence": "migrations"})
                await ws.send(encode_message(encode_extension(request)))
            replies: list[Reply] = []
            while len(replies) < 40:
                message = decode_message(await ws.recv())  # type: ignore[arg-type]
                if isinstance(message, Extension):
                    ext = decode_extension(message)
                    if isinstance(ext, Reply):
                        replies.append(ext)
            limited = [r for r in replies if r.error == "rate_limited"]
            served = sorted(r.result["value"] for r in replies if r.error is None)
            # A burst of 10, then 5 a second: most of 40 at once are answered rate_limited.
            assert len(limited) >= 10 and served == list(range(1, len(served) + 1))
            await ws.send(encode_message(SyncStep1(b"\x00")))  # still connected
            await ws.close()
            async with crdtdoc.connect(url, agent="fast", token=token("fast")) as fast:
                numbers = [await fast.next_number("migrations") for _ in range(15)]
            assert numbers == list(range(len(served) + 1, len(served) + 16))

    run(body())


def test_a_reader_sees_what_the_hub_holds_when_relayed_updates_are_merged(
    tmp_path: Path,
) -> None:
    """Attack review: mallory re-sends an id the room holds, with other content, in an update
    that waits for another id, then sends that id; both commit in one turn and reach a reader
    in one writer turn, merged. The merge kept mallory's content for the id the hub had
    skipped: the reader read 'aZZZwy' where the hub holds 'abZZwy', for good (same state
    vector). The hub relays what its engine integrated."""
    from pycrdt import Doc, Text, merge_updates

    from tests.support.builders import typed

    u1, u2 = typed([(0, "a"), (1, "b")], 1111)
    _, forged = typed([(0, "a"), (1, "ZZZ")], 1111)
    y0, y1 = typed([(0, "w"), (1, "y")], 2222)
    reader_doc: Doc = Doc()

    async def body() -> str:
        async with running_hub(tmp_path / "hub.db", secret=SECRET) as hub:
            url = f"{hub.url}/r"
            async with (
                ws_connect(f"{url}?token={token('reader', read_only=True)}") as reader,
                ws_connect(f"{url}?token={token('mallory')}") as mallory,
            ):
                await reader.send(encode_message(SyncStep1(b"\x00")))
                for update in (u1, merge_updates(forged, y1), merge_updates(u2, y0)):
                    await mallory.send(encode_message(SyncUpdate(update)))
                    await asyncio.sleep(0.2)
                with contextlib.suppress(TimeoutError):
                    while True:
                        message = decode_message(await asyncio.wait_for(reader.recv(), 1.0))  # type: ignore[arg-type]
                        if isinstance(message, (SyncStep2, SyncUpdate)):
                            reader_doc.apply_update(message.update)
            return hub.rooms["r"].replica.document("t").read()

    held = run(body(), timeout=40)
    assert held == "abZZwy"
    assert str(reader_doc.get("t", type=Text)) == held

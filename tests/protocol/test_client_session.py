"""The client's side of a hub link, without sockets, clocks or an event loop: every decision
`ClientSession` makes, asserted directly (the link in crdtdoc.client.link only carries them out)."""

from __future__ import annotations

import json
import random

import pytest

from crdtdoc import Replica
from crdtdoc.errors import (
    AuthError,
    Conflict,
    CoordinationError,
    CrdtdocError,
    FencedOut,
    Forbidden,
    HubStorageError,
    LeaseHeld,
    LinkError,
    NotConnected,
    RateLimited,
    Refused,
    RemoteError,
    StorageError,
    UsageError,
)
from crdtdoc.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.client_session import SLOW_DOWN_SECONDS, ClientSession, reply_error
from crdtdoc.protocol.coalesce import MAX_MERGED_BYTES
from crdtdoc.protocol.extension import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Durable,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_extension,
    encode_extension,
)
from crdtdoc.protocol.messages import (
    Auth,
    Awareness,
    Extension,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.versions import Version

URLS = ["ws://one:1/r", "ws://two:2/r", "ws://three:3/r"]
NOW = 1_000.0


def _session(urls: list[str] | None = None, backoff: Backoff | None = None) -> ClientSession:
    return ClientSession(Replica("alice"), urls or URLS[:1], backoff or Backoff(), "active")


def _welcome(max_message_bytes: int | None = 64 * 1024, durable: Version | None = None) -> bytes:
    welcome = Welcome("r", durable or Version({}), max_message_bytes=max_message_bytes)
    return encode_message(encode_extension(welcome))


def _welcomed(urls: list[str] | None = None) -> ClientSession:
    session = _session(urls)
    session.open()
    session.receive(_welcome(), NOW)
    return session


def _presence_of(message: bytes) -> AwarenessEntry:
    decoded = decode_message(message)
    assert isinstance(decoded, Awareness)
    (entry,) = decode_awareness(decoded.data, max_state_bytes=1 << 20)
    return entry


def _awareness(client: int, clock: int, state: object) -> bytes:
    entry = AwarenessEntry(client, clock, json.dumps(state))
    return encode_message(Awareness(encode_awareness([entry])))


# -- the link comes up -----------------------------------------------------------------------


def test_a_new_link_says_hello_then_publishes_presence_then_asks_for_what_it_lacks() -> None:
    session = _session()
    hello, presence, step1 = session.open()
    said = decode_message(hello)
    assert isinstance(said, Extension) and decode_extension(said) == Hello("alice")
    entry = _presence_of(presence)
    assert entry.client == session.replica.client_id
    assert json.loads(entry.state)["agent"] == "alice"
    assert isinstance(decode_message(step1), SyncStep1)
    assert session.connected and not session.welcomed and not session.synced
    # Reconnecting bumps the presence clock past the "left" entry the hub wrote at clock + 1.
    session.closed(1006, "")
    again = _presence_of(session.open()[1])
    assert again.clock >= entry.clock + 2
    assert session.connects == 2


def test_a_welcome_sets_the_hubs_limits_and_durable_version() -> None:
    session = _session()
    session.open()
    assert session.merged_limit() == 0  # nothing merges before the hub said what it takes
    assert session.step2_limit() == DEFAULT_MAX_MESSAGE_BYTES
    durable = Version({7: 3})
    incoming = session.receive(_welcome(64 * 1024, durable), NOW)
    assert incoming.changed and incoming.sync is None
    assert session.welcomed and session.max_message_bytes == 64 * 1024
    assert session.sync.max_message_bytes == session.step2_limit() == 64 * 1024
    assert session.merged_limit() == 32 * 1024
    assert session.durable.version == durable
    session.receive(_welcome(1 << 30), NOW)
    assert session.merged_limit() == MAX_MERGED_BYTES


def test_sync_messages_are_handed_to_the_replica_and_applied_with_the_hub_as_origin() -> None:
    session = _welcomed()
    other = Replica("bob")
    other.document("d").insert(0, "from the hub")
    incoming = session.receive(encode_message(SyncStep2(other.encode_update())), NOW)
    assert incoming.sync is not None and incoming.changed
    assert session.replica.document("d").read() == ""  # not applied until the replica says
    seen: list[bool] = []
    session.replica.on_update(lambda update, local: seen.append(session.applying_sync))
    assert session.apply_sync(incoming.sync) == []
    assert session.replica.document("d").read() == "from the hub"
    assert seen and all(seen) and not session.applying_sync
    assert session.synced and session.opened and session.reachable


def test_bad_data_from_the_hub_is_recorded_not_raised_and_a_text_frame_is_refused() -> None:
    session = _welcomed()
    assert session.apply_sync(SyncUpdate(b"\xff\xff\xff")) == []
    assert session.last_error is not None and "invalid data" in session.last_error
    with pytest.raises(RemoteError, match="text frame"):
        session.receive("hello", NOW)
    session.receive(encode_message(Auth("read-only token")), NOW)
    assert session.last_error == "permission denied: read-only token"


# -- what a close means ----------------------------------------------------------------------


@pytest.mark.parametrize(("code", "error"), [(4401, AuthError), (4403, Forbidden)])
def test_a_hub_closing_before_its_welcome_refuses_the_agent_for_good(
    code: int, error: type[CrdtdocError]
) -> None:
    session = _session()
    session.open()
    verdict = session.closed(code, "")
    assert isinstance(verdict.admission, error) and verdict.refused is None
    assert "no reason given" in str(verdict.admission)
    assert session.admission is verdict.admission and session.opened
    assert not session.connected


@pytest.mark.parametrize("code", [4403, 4413])
def test_after_the_welcome_4403_and_4413_mean_a_refused_write(code: int) -> None:
    session = _welcomed()
    verdict = session.closed(code, "room full")
    assert verdict.admission is None and session.admission is None
    assert isinstance(verdict.refused, Refused) and verdict.refused.code == code
    assert "room full" in str(verdict.refused) and not verdict.slow_down


def test_other_closes_mean_nothing_but_reconnect_and_forget_what_that_hub_said() -> None:
    session = _welcomed()
    session.receive(encode_message(encode_extension(Durable(Version({}), "disk full"))), NOW)
    session.receive(_awareness(99, 1, {"agent": "bob"}), NOW)
    assert session.store_error == "disk full" and session.presence
    verdict = session.closed(1001, "hub shutting down")
    assert verdict.admission is None and verdict.refused is None and not verdict.slow_down
    assert not verdict.protocol_error
    assert session.store_error is None and session.presence == {}
    assert not session.welcomed and not session.connected
    assert session.closed(1009, "too large").protocol_error


def test_requests_waiting_when_the_link_drops_are_reported_unanswered() -> None:
    session = _welcomed()
    first = session.request("next", {"sequence": "s"}, NOW, 30)
    second = session.request("leases", {}, NOW, 30)
    session.forget(first)
    assert session.closed(1006, "").unanswered == [second.id]


# -- which hub next, and when ----------------------------------------------------------------


def test_the_backoff_grows_while_dialling_fails_and_starts_afresh_after_a_sync() -> None:
    session = _session(backoff=Backoff(initial=0.1, maximum=10.0))
    rng = random.Random(1)
    delays = [session.next_dial(rng).delay for _ in range(5)]
    for attempt, delay in enumerate(delays):
        cap = 0.1 * 2**attempt
        assert cap / 2 <= delay <= cap
    session.open()
    session.sync.synced = True  # the hub's step 2 arrived: the link worked
    session.closed(1006, "")
    assert session.next_dial(rng).delay <= 0.1


def test_a_link_closed_for_a_too_large_message_backs_off_and_says_why() -> None:
    """A change larger than the hub's max_message_bytes: the hub closes the link (1009) as soon
    as it arrives, right after each sync. Starting the backoff afresh after every such sync
    redialled ten times a second, resending megabytes each time; the delays grow instead, and a
    flush that times out says what is wrong instead of 'call again'."""
    session = _session(URLS[:1], Backoff(initial=0.1, maximum=10.0))
    rng = random.Random(1)
    delays = []
    for _ in range(5):
        session.open()
        session.sync.synced = True  # synced, then sent the large change
        session.closed(1009, "message too big")
        delays.append(session.next_dial(rng).delay)
    assert delays[-1] > 0.8  # 0.1, 0.2, 0.4, 0.8, 1.6 (capped, with jitter down to half)
    said = str(session.timeout_error("the hub did not confirm durable storage", 5.0))
    assert "too large" in said and "max_message_bytes" in said
    session.open()
    session.sync.synced = True
    session.closed(1006, "")  # a link that ended otherwise after a sync: afresh again
    assert session.next_dial(rng).delay <= 0.1


def test_several_hubs_are_tried_in_turn_and_the_delay_grows_once_all_were() -> None:
    session = _session(URLS, Backoff(initial=0.1, maximum=10.0))
    rng = random.Random(2)
    dials = [session.next_dial(rng) for _ in range(6)]
    assert [d.hub for d in dials] == [1, 2, 0, 1, 2, 0]
    assert all(d.delay <= 0.1 for d in dials[:3])
    assert all(0.1 <= d.delay <= 0.2 for d in dials[3:])
    assert session.url == URLS[0]


def test_a_rate_limited_link_waits_a_second_and_stays_with_the_same_hub() -> None:
    session = _session(URLS)
    session.open()
    assert session.closed(4429, "too fast").slow_down
    dial = session.next_dial(random.Random(3))
    assert dial.hub == 0 and dial.delay >= SLOW_DOWN_SECONDS
    assert session.next_dial(random.Random(3)).hub == 1  # once: the next failure moves on


# -- requests and replies --------------------------------------------------------------------


def test_a_request_needs_a_welcomed_link() -> None:
    session = _session()
    with pytest.raises(NotConnected, match="taking a lease needs the hub"):  # not "acquire"
        session.request("acquire", {}, NOW, 30)
    session.open()
    with pytest.raises(NotConnected):  # connected, but the hub has not answered the hello
        session.request("acquire", {}, NOW, 30)


def test_replies_are_matched_to_requests_by_id_and_late_ones_are_ignored() -> None:
    session = _welcomed()
    one = session.request("next", {"sequence": "s"}, NOW, 5.0)
    two = session.request("leases", {}, NOW + 1, 30.0)
    assert two.id != one.id and one.deadline == NOW + 5.0 and two.deadline == NOW + 31.0
    sent = decode_extension(decode_message(two.message))  # type: ignore[arg-type]
    assert sent == Request(two.id, "leases", {})
    answer = Reply(two.id, {"leases": []})
    assert session.receive(encode_message(encode_extension(answer)), NOW).reply == answer
    again = session.receive(encode_message(encode_extension(answer)), NOW)
    assert again.reply is None  # answered once
    session.forget(one)  # timed out: a reply arriving now is nobody's
    late = Reply(one.id, {"value": 1})
    assert session.receive(encode_message(encode_extension(late)), NOW).reply is None


def test_what_a_reply_means() -> None:
    assert ClientSession.outcome(Reply(1, {"value": 4})) == {"value": 4}
    with pytest.raises(Conflict) as conflict:
        ClientSession.outcome(Reply(1, {"changes": ["bob set x"]}, "conflict", "stale"))
    assert conflict.value.changes == ["bob set x"]
    held = reply_error("held", "taken", {"holder": "bob"})
    assert isinstance(held, LeaseHeld) and held.holder == "bob"
    assert isinstance(reply_error("fenced", "", {}), FencedOut)
    full = reply_error("full", "too big", {})
    assert isinstance(full, Refused) and full.code == 4413
    assert isinstance(reply_error("rate_limited", "", {}), RateLimited)
    # every code lands in a group a caller can catch, never the bare root
    assert type(reply_error("internal", "oops", {})) is LinkError
    assert type(reply_error("a code from a newer hub", "", {})) is LinkError
    assert type(reply_error("invalid", "ttl must be ...", {})) is UsageError
    assert type(reply_error("limit", "too many leases", {})) is CoordinationError
    assert isinstance(reply_error("unavailable", "database down", {}), StorageError)


def test_a_rate_limited_request_is_retried_with_growing_pauses_until_its_deadline() -> None:
    rng = random.Random(5)
    retry = ClientSession.retry_rate_limited(NOW, NOW + 10, 0.05, rng)
    assert retry is not None
    sleep, pause = retry
    assert 0.025 <= sleep <= 0.075 and pause == 0.1  # jittered, then doubled
    capped = ClientSession.retry_rate_limited(NOW, NOW + 10, 0.8, rng)
    assert capped is not None and capped[1] == 1.0
    assert ClientSession.retry_rate_limited(NOW, NOW + 0.05, 0.05, rng) is None  # out of time


def test_timeouts_say_whether_the_link_is_up() -> None:
    session = _session()
    error = session.timeout_error("no sync", 2)
    assert "within 2 s" in str(error) and "not connected (connecting)" in str(error)
    session.open()
    assert str(session.timeout_error("no sync", 2)).endswith("is connected")
    unreachable = session.unreachable(10, 0.5)
    assert unreachable.reached and "cannot sync with" in str(unreachable)
    session.closed(1006, "")
    assert not _session().unreachable(10, 0.5).reached


# -- durability and presence -----------------------------------------------------------------


def test_a_failing_store_is_reported_only_for_what_is_not_durable() -> None:
    session = _welcomed()
    durable = Version({7: 3})
    failing = Durable(durable, store_error="database or disk is full")
    assert session.receive(encode_message(encode_extension(failing)), NOW).changed
    assert session.store_error == "database or disk is full"
    assert session.store_failure(durable) is None  # that much is safe
    failure = session.store_failure(Version({7: 4}))
    assert isinstance(failure, HubStorageError) and failure.reason == "database or disk is full"
    session.receive(encode_message(encode_extension(Durable(Version({7: 4})))), NOW)
    assert session.store_error is None and session.store_failure(Version({7: 4})) is None


def test_presence_keeps_the_newest_state_per_client() -> None:
    session = _welcomed()
    session.receive(_awareness(99, 5, {"agent": "bob", "status": "busy"}), NOW)
    assert session.presence[99].status == "busy" and session.presence[99].last_seen == NOW
    session.receive(_awareness(99, 4, {"agent": "bob", "status": "stale"}), NOW + 1)
    assert session.presence[99].status == "busy"  # an older clock is ignored
    removed = AwarenessEntry(99, 6, "null")
    session.receive(encode_message(Awareness(encode_awareness([removed]))), NOW)
    assert 99 not in session.presence


def test_a_presence_query_is_answered_at_the_same_clock() -> None:
    session = _welcomed()
    published = _presence_of(session.presence_message() or b"")
    (answer,) = session.receive(encode_message(QueryAwareness()), NOW).send
    assert _presence_of(answer).clock == published.clock
    session.status, session.task = "reviewing", "task-7"
    state = json.loads(_presence_of(session.presence_message() or b"").state)
    assert state["status"] == "reviewing" and state["task"] == "task-7"
    leaving = _presence_of(session.presence_message(leaving=True) or b"")
    assert leaving.removed
    session.closed(1000, "")
    assert session.presence_message() is None  # nothing to publish on

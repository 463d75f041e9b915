"""What a room reads before its sync session (`crdtdoc.server.intake`): messages decoded, updates
parsed and sliced, known ones not parsed, and whose share a waiting update is."""

from __future__ import annotations

from crdtdoc import Replica
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, encode_message
from crdtdoc.server.config import HubConfig
from crdtdoc.server.intake import hub_limits, pending_holder, read_message
from tests.server.test_room import new_peer


def test_an_update_is_parsed_and_cut_into_slices_against_the_state_given() -> None:
    r = Replica("alice")
    r.document("d").insert(0, "hello")
    update = r.encode_update()
    incoming = read_message(encode_message(SyncUpdate(update)), {})
    assert isinstance(incoming.message, SyncUpdate) and not incoming.known
    assert incoming.parsed is not None and r.client_id in incoming.parsed.structs
    assert incoming.slices and incoming.cut_on == {}
    rebuilt = Replica("reader")
    for data, _ in incoming.slices:
        rebuilt.apply_update(data)
    assert rebuilt.document("d").read() == "hello"


def test_an_update_the_room_holds_is_not_parsed() -> None:
    update = Replica("alice").encode_update()
    incoming = read_message(encode_message(SyncUpdate(update)), {}, holds=lambda _: True)
    assert incoming.known and incoming.parsed is None and incoming.slices is None


def test_other_messages_are_only_decoded() -> None:
    incoming = read_message(encode_message(SyncStep1(b"\x00")), {}, holds=lambda _: True)
    assert isinstance(incoming.message, SyncStep1)
    assert (incoming.parsed, incoming.slices, incoming.known) == (None, None, False)


def test_the_causal_buffer_shares_come_from_the_config() -> None:
    config = HubConfig(max_waiting_updates=7, max_waiting_bytes=700, max_waiting_structs=70)
    limits = hub_limits(config)
    assert (
        limits.max_pending_updates_per_origin,
        limits.max_pending_bytes_per_origin,
        limits.max_pending_structs_per_origin,
    ) == (7, 700, 70)
    assert limits.max_pending_updates >= 7 and limits.max_pending_bytes >= 700


def test_a_peer_s_waiting_updates_are_charged_to_its_identity() -> None:
    peer = new_peer(HubConfig(), None, "alice")
    assert pending_holder(peer) == peer.rate_key
    assert pending_holder("the store") == "the store"

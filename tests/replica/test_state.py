"""`crdtdoc.replica.state`: the limits a replica starts with and how they reach its causal
buffer, fresh client ids that avoid the ids given, and when `Pending` counts as something."""

from __future__ import annotations

import pytest

from crdtdoc.idset import IdSet
from crdtdoc.replica.state import Pending, ReplicaLimits, ReplicaState, new_client_id
from crdtdoc.roots import INTERNAL_ROOTS


def test_replica_limits_defaults_suit_an_agent_process() -> None:
    limits = ReplicaLimits()
    assert limits.max_pending_updates == 10_000
    assert limits.max_pending_bytes == 64 * 1024 * 1024
    assert limits.max_pending_updates_per_origin is None
    assert limits.max_pending_bytes_per_origin is None
    assert limits.max_pending_structs_per_origin is None
    assert limits.checkpoint_log_bytes == 256 * 1024


def test_limits_reach_the_causal_buffer_and_a_missing_share_falls_back_to_the_whole() -> None:
    whole = ReplicaState("a", 7, ReplicaLimits(max_pending_updates=3, max_pending_bytes=900))
    bounds = whole._buffer.limits
    assert (bounds.max_updates, bounds.max_bytes) == (3, 900)
    assert (bounds.max_updates_per_holder, bounds.max_bytes_per_holder) == (3, 900)
    assert bounds.max_structs_per_holder is None
    shared = ReplicaState(
        "a",
        7,
        ReplicaLimits(
            max_pending_updates_per_origin=2,
            max_pending_bytes_per_origin=50,
            max_pending_structs_per_origin=9,
        ),
    )
    bounds = shared._buffer.limits
    assert (bounds.max_updates_per_holder, bounds.max_bytes_per_holder) == (2, 50)
    assert bounds.max_structs_per_holder == 9
    assert ReplicaState("a", 7, None)._limits == ReplicaLimits()


def test_an_empty_state_holds_nothing_and_only_bookkeeping_roots_are_typed() -> None:
    s = ReplicaState("alice", 42, None)
    assert (s._agent, s._client_id) == ("alice", 42)
    assert s._state == {} and not s._deleted and not s._buffer and s._log == []
    assert s.rebuilds == 0 and s.generation == 0 and s.judge is None
    assert set(s._root_kinds) == INTERNAL_ROOTS  # only bookkeeping typed before any artifact


def test_new_client_id_is_32_bit_nonzero_and_avoids_the_given_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([0, 5, 6, 7])
    monkeypatch.setattr("secrets.randbits", lambda bits: next(draws))
    assert new_client_id(avoid={5, 6}) == 7  # 0 is never an id; 5 and 6 are taken
    monkeypatch.undo()
    ids = {new_client_id() for _ in range(200)}
    assert all(0 < cid < 2**32 for cid in ids) and len(ids) > 190


def test_pending_is_true_while_updates_or_deletions_wait() -> None:
    waits_for = IdSet()
    waits_for.add(1, 0, 3)
    assert not Pending(0, 0, IdSet(), IdSet())
    assert not Pending(0, 0, IdSet(), waits_for)  # what is missing alone waits for nothing
    assert Pending(1, 10, IdSet(), waits_for)
    assert Pending(0, 0, waits_for, waits_for)  # a held deletion

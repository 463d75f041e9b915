"""`crdtdoc.revert_text`: whose work since when (`Scope`), and the text plan: stretches taken
out where they stand, deleted ones written back where they stood, one walk, edits merged."""

from __future__ import annotations

from crdtdoc import Replica
from crdtdoc.revert_text import _merged, scope_of
from crdtdoc.textdiff import Edit


def test_a_run_of_deletions_carried_on_past_the_version_is_not_all_since() -> None:
    """The deletions log extends one entry over a run of deleting commits, so the entry
    written after the version also holds what the agent deleted before it: only what was not
    deleted at the version counts as since."""
    bob = Replica("bob", history=True)
    bob.document("d").insert(0, "abcdef")
    bob.document("d").delete(0, 1)  # "a", before the version
    v = bob.version()
    bob.document("d").delete(0, 1)  # "b", after it: the same run's entry grows
    room = bob.room_history()
    scope = scope_of(room, frozenset({bob.client_id}), v)
    assert len(scope.wrote_deletions) == 1  # "b" only
    bob.revert("bob", since=v)
    assert bob.document("d").read() == "bcdef"


def test_deleted_stretches_come_back_in_their_order_between_others_text() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.document("d").insert(0, "one two three four")
    bob.apply_update(alice.encode_update())
    v = bob.version()
    bob.document("d").delete(3, 4)  # " two"
    bob.document("d").delete(3, 6)  # " three"
    alice.apply_update(bob.encode_update())
    alice.document("d").insert(3, "!")  # written where bob's deletions were
    bob.apply_update(alice.encode_update())
    bob.revert("bob", since=v)
    assert bob.document("d").read() in ("one two three! four", "one! two three four")


def test_an_insertion_and_a_deletion_at_one_index_are_one_edit() -> None:
    edits = [Edit(2, 0, "xy"), Edit(2, 3, ""), Edit(9, 0, "z")]
    assert _merged(edits) == [Edit(2, 3, "xy"), Edit(9, 0, "z")]


def test_reverting_twice_writes_deleted_text_back_once() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.document("d").insert(0, "keep this line\n")
    bob.apply_update(alice.encode_update())
    v = bob.version()
    bob.document("d").delete(0, 5)
    alice.apply_update(bob.encode_update())
    first = alice.revert("bob", since=v)
    second = alice.revert("bob", since=v)
    assert alice.document("d").read() == "keep this line\n"
    assert (first.restored, second.restored) == (5, 0)
    assert second.kept == ("d: 5 character(s) an earlier revert wrote back already",)

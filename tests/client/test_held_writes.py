"""What a guarded commit holds back, submits and settles, decided without a hub or a loop."""

from __future__ import annotations

import pytest

from crdtdoc.client.coordination import Fence
from crdtdoc.client.held_writes import HeldWrites
from crdtdoc.errors import TooLarge
from crdtdoc.versions import Version


def test_nothing_is_held_until_a_guarded_commit_begins() -> None:
    held = HeldWrites()
    assert not held.active and not held.hold(b"u1")
    held.begin()
    assert held.active and held.hold(b"u2") and held.hold(b"u3")


def test_the_commit_request_carries_the_held_updates_with_what_guards_them() -> None:
    held = HeldWrites()
    held.begin()
    updates = [b"one", b"two"]
    for update in updates:
        held.hold(update)
    expect = Version({5: 10})
    submitted, args = held.request(42, expect, ["spec", "api"], Fence("deploy", 7), None, "ws://h")
    assert submitted == updates and submitted[0] is updates[0]  # the very objects: undone by id
    assert args == {
        "updates": updates,
        "client": 42,
        "expect": expect.to_bytes(),
        "on": ["api", "spec"],
        "fence": {"name": "deploy", "token": 7},
    }
    _, unguarded = held.request(42, None, ["spec"], None, None, "ws://h")
    assert unguarded == {"updates": updates, "client": 42}  # `on` goes only with `expect`
    assert held.active  # until the hub's answer settles it


def test_a_commit_with_nothing_held_ends_the_hold_and_sends_nothing() -> None:
    held = HeldWrites()
    held.begin()
    assert held.request(1, None, (), None, None, "ws://h") == ([], None)
    assert not held.active


def test_a_commit_larger_than_the_hub_takes_is_refused_before_it_is_sent() -> None:
    held = HeldWrites()
    held.begin()
    held.hold(b"x" * 70_000)
    with pytest.raises(TooLarge, match="at most 65,536") as refused:
        held.request(1, None, (), None, 64 * 1024, "ws://h")
    assert refused.value.code == 1009 and held.active  # the caller undoes it
    _, args = held.request(1, None, (), None, 128 * 1024, "ws://h")
    assert args is not None


def test_applied_the_held_updates_are_done_and_those_made_meanwhile_go_on() -> None:
    held = HeldWrites()
    held.begin()
    held.hold(b"mine")
    submitted, _ = held.request(1, None, (), None, None, "ws://h")
    held.hold(b"made while the hub decided")
    assert held.settle(submitted) == [b"made while the hub decided"]
    assert not held.active and not held.hold(b"after")


def test_refused_every_held_update_is_given_back_to_undo() -> None:
    held = HeldWrites()
    held.begin()
    held.hold(b"mine")
    held.request(1, None, (), None, None, "ws://h")
    held.hold(b"meanwhile")
    assert held.drop() == [b"mine", b"meanwhile"]
    assert not held.active and held.drop() == []

"""`crdtdoc.revert_maps`: keys set back or removed, removed keys brought back, a spec member
judged as a whole, and a map others wrote inside kept (and reported once)."""

from __future__ import annotations

from crdtdoc import Replica
from tests.support.builders import sync


def test_a_member_set_twice_by_the_agent_goes_back_to_the_value_before_both() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.spec("api").set("get", "v1")
    sync(alice, bob)
    v = bob.version()
    bob.spec("api").set("get", "v2")
    bob.spec("api").set("get", "v3")
    sync(alice, bob)
    alice.revert("bob", since=v)
    assert alice.spec("api").get("get") == "v1"


def test_a_removed_task_comes_back_whole_with_what_it_held() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    tasks = alice.tasks("t")
    task = tasks.add("keep me", description="with a description", labels=["x"])
    tasks.note(task, "a note")
    sync(alice, bob)
    v = bob.version()
    with bob.transaction():  # (what a stock client's removal does)
        del bob.tasks("t")._root()[task]
    sync(alice, bob)
    assert task not in alice.tasks("t")
    result = alice.revert("bob", since=v)
    assert result.restored == 1
    back = alice.tasks("t").get(task)
    assert (back.title, back.description, back.labels) == ("keep me", "with a description", ["x"])
    assert [n.text for n in back.notes] == ["a note"]


def test_a_task_others_wrote_inside_is_kept_and_reported_once() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    sync(alice, bob)
    v = alice.version()
    task = bob.tasks("t").add("bob's task")
    sync(alice, bob)
    alice.tasks("t").claim(task)
    alice.tasks("t").note(task, "alice works on it")
    result = alice.revert("bob", since=v)
    assert task in alice.tasks("t")
    assert result.kept == (f"t/{task} (others wrote inside it)",)

"""InterfaceSpec: concurrent writes are kept and shown, never silently won."""

from __future__ import annotations

import pytest

import crdtdoc
from crdtdoc import Replica
from tests.support.builders import sync


def test_two_agents_adding_methods_concurrently_both_survive() -> None:
    a, b = Replica("alice"), Replica("bob")
    a.spec("user-service").set("getUserByEmail", "(email: str) -> User")
    b.spec("user-service").set("getUsersByRole", "(role: str) -> list[User]")
    sync(a, b)
    for r in (a, b):
        spec = r.spec("user-service")
        assert spec.members() == ["getUserByEmail", "getUsersByRole"]
        assert spec.get("getUsersByRole") == "(role: str) -> list[User]"
        assert spec.conflicts() == {}


def test_assumption_collision_is_a_visible_conflict_until_resolved() -> None:
    a, b = Replica("alice"), Replica("bob")
    a.spec("user-service").set("User.id", "UUID")
    b.spec("user-service").set("User.id", "int")
    sync(a, b)
    for r in (a, b):
        with pytest.raises(crdtdoc.ConcurrentValues, match="written concurrently") as conflict:
            r.spec("user-service").get("User.id")
        assert conflict.value.member == "User.id"
        assert sorted((v.agent, v.value) for v in conflict.value.values) == [
            ("alice", "UUID"),
            ("bob", "int"),
        ]
        assert list(r.spec("user-service").conflicts()) == ["User.id"]
    b.spec("user-service").resolve("User.id", "UUID")
    sync(a, b)
    assert a.spec("user-service").get("User.id") == "UUID" == b.spec("user-service").get("User.id")
    assert a.spec("user-service").conflicts() == {}


def test_a_write_supersedes_exactly_what_its_writer_saw() -> None:
    a, b, c = Replica("a"), Replica("b"), Replica("c")
    a.spec("s").set("m", 1)
    sync(a, b, c)
    b.spec("s").set("m", 2)  # saw 1: supersedes it
    sync(a, b, c)
    c.spec("s").set("m", {"v": 3})  # saw 2
    a.spec("s").delete("m")  # saw 2 too, concurrently with c: c's value survives the delete
    sync(a, b, c)
    assert [v.value for v in b.spec("s").values("m")] == [{"v": 3}]
    assert b.spec("s").get("m") == {"v": 3}


def test_values_are_json_like_and_ints_stay_ints() -> None:
    spec = Replica("a").spec("s")
    value = {"args": ["email"], "returns": "User", "since": 3, "deprecated": False, "x": None}
    spec.set("getUserByEmail", value)
    assert spec.get("getUserByEmail") == value
    assert spec.to_dict() == {"getUserByEmail": value}
    with pytest.raises(crdtdoc.InvalidValue):
        spec.set("bad", {1: "x"})
    with pytest.raises(crdtdoc.NotFound, match="no member 'missing'"):
        spec.get("missing")
    assert spec.get("missing", None) is None
    assert not spec.delete("missing")


def test_freeze_refuses_every_later_write() -> None:
    a, b = Replica("alice"), Replica("bob")
    a.spec("api").set("ping", "() -> str")
    frozen_at = a.spec("api").freeze()
    sync(a, b)
    spec = b.spec("api")
    assert spec.frozen and spec.frozen_by() == "alice" and spec.frozen_at() == frozen_at
    for write in (
        lambda: spec.set("pong", "x"),
        lambda: spec.set("ping", "() -> str"),  # even a write that changes nothing
        lambda: spec.delete("ping"),
        lambda: spec.resolve("ping", "y"),
        lambda: spec.freeze(),
    ):
        with pytest.raises(crdtdoc.FrozenError, match="frozen by alice"):
            write()
    assert spec.get("ping") == "() -> str"


def test_a_spec_with_conflicting_members_cannot_be_frozen() -> None:
    """Frozen with a conflict in it, the member could never be resolved (resolve is a write)."""
    a, b = Replica("alice"), Replica("bob")
    a.spec("api").set("c", "A")
    b.spec("api").set("c", "B")
    sync(a, b)
    with pytest.raises(crdtdoc.ConcurrentValues, match="resolve them before freezing") as refused:
        a.spec("api").freeze()
    assert refused.value.member == "c" and not a.spec("api").frozen
    a.spec("api").resolve("c", "A")
    a.spec("api").freeze()
    assert a.spec("api").frozen


def test_a_write_that_fails_leaves_no_artifact_behind() -> None:
    """A mistyped name in a failing write used to create the artifact anyway."""
    r = Replica("alice")
    with pytest.raises(crdtdoc.NotFound):
        r.document("ghost").replace("absent", "x")
    r.document("real").append("kept\n")
    assert r.artifacts() == {"real": "document"}


def test_a_freeze_waiting_for_approvals_counts_no_self_approval() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    with pytest.raises(crdtdoc.ReviewRefused, match="cannot name yourself"):
        alice.spec("api").freeze(approvers=["alice"])
    alice.spec("api").set("get", "x")
    alice.spec("api").freeze(quorum=1)
    with pytest.raises(crdtdoc.ReviewRefused, match="another agent approves it"):
        alice.spec("api").approve()
    bob.apply_update(alice.encode_update())
    bob.spec("api").approve()
    version = bob.version()
    bob.spec("api").approve()  # approved already: nothing written
    assert bob.version() == version and bob.spec("api").frozen

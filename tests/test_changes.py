"""The change feed: what changed since a version, in which artifact, by which agent."""

from __future__ import annotations

from crdtdoc import Replica


def _sync(*replicas: Replica) -> None:
    for a in replicas:
        for b in replicas:
            if a is not b:
                b.apply_update(a.encode_update(b.version()))


def test_inserts_sets_deletes_and_removes_are_attributed() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("design").insert(0, "# Design\nids are UUIDs\n")
    alice.map("spec").set("getUser", "(id) -> User")
    alice.map("spec").set("old", 1)
    _sync(alice, bob)
    mark = bob.version()

    bob.document("design").delete(9, 4)  # "ids " -> deleted by bob
    bob.document("design").insert(0, "!")
    bob.map("spec").set("getUsersByRole", "(role) -> list[User]")
    bob.map("spec").delete("old")
    _sync(alice, bob)

    for replica in (alice, bob):
        changes = replica.changes_since(mark)
        described = sorted(c.describe() for c in changes)
        assert described == sorted(
            [
                "bob inserted '!' at line 1 of design",
                "bob deleted 4 characters from design",
                "bob set spec.getUsersByRole = '(role) -> list[User]'",
                "bob removed spec.old",
            ]
        ), replica.agent
        assert all(c.agent == "bob" for c in changes)


def test_nothing_changed_since_now() -> None:
    r = Replica("a")
    r.document("d").insert(0, "x")
    r.document("d").delete(0, 1)
    assert r.changes_since(r.version()) == []
    assert r.changes_since(r.version().token()) == []


def test_inserted_then_deleted_text_cancels_out() -> None:
    r = Replica("a")
    mark = r.version()
    r.document("d").insert(0, "hello")
    r.document("d").delete(1, 3)
    changes = r.changes_since(mark)
    assert [c.kind for c in changes] == ["insert"] * len(changes)
    assert "".join(c.text for c in changes) == "ho"
    assert sum(c.length for c in changes) == 2


def test_a_late_joiner_attributes_everything() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, "abc")
    bob.apply_update(alice.encode_update())
    bob.document("d").insert(3, "def")
    late = Replica("carol")
    late.apply_update(bob.encode_update())
    described = [c.describe() for c in late.changes_since(None)]
    assert sorted(described) == [
        "alice inserted 'abc' at line 1 of d",
        "bob inserted 'def' at line 1 of d",
    ]


def test_multibyte_text_since_a_mid_item_version() -> None:
    r = Replica("a")
    r.document("d").insert(0, "😀x")
    mark = r.version()
    r.document("d").insert(2, "中")
    (change,) = r.changes_since(mark)
    assert change.text == "中"


def test_changes_speak_in_artifact_terms() -> None:
    alice, bob, carol = Replica("alice"), Replica("bob"), Replica("carol")
    backlog = alice.tasks("backlog")
    tid = backlog.add("write migration")
    alice.spec("user-service").set("getUserByEmail", "(email) -> User")
    alice.document("design").write("# Design\n\n\nend\n")
    _sync(alice, bob)
    _sync(bob, carol)
    mark = carol.version()
    bob.tasks("backlog").claim(tid)
    bob.tasks("backlog").note(tid, "starting now")
    alice.spec("user-service").set("getUserByEmail", "(email: str) -> User")
    carol.document("design").insert(len("# Design\n\n\n"), "x" * 120)
    _sync(alice, bob)
    _sync(bob, carol)
    _sync(alice, bob)
    label = f"task {tid} ('write migration')"
    for replica in (alice, bob, carol):
        changes = replica.changes_since(mark)
        assert sorted(c.describe() for c in changes) == sorted(
            [
                f"bob claimed {label} in backlog",
                f"bob noted on {label} in backlog: 'starting now'",
                "alice set getUserByEmail in user-service to '(email: str) -> User'",
                "carol inserted 120 characters at line 4 of design",
            ]
        ), replica.agent
        kinds = {c.kind: c for c in changes}
        assert kinds["claimed"].subject == tid and kinds["claimed"].artifact == "backlog"
        assert kinds["member-set"].subject == "getUserByEmail"
        assert all(c.version == replica.version().token() for c in changes)


def test_task_lifecycle_in_the_feed() -> None:
    r = Replica("alice")
    tasks = r.tasks("backlog")
    mark = r.version()
    tid = tasks.add("ship it")
    tasks.claim(tid)
    tasks.complete(tid)
    middle = r.version()
    tasks.reopen(tid)
    tasks.update(tid, title="ship it twice")
    label = f"task {tid} ('ship it twice')"
    # A claim and a completion made and undone since `mark` cancel out; the task reads as added.
    assert [c.describe() for c in r.changes_since(mark)] == [f"alice added {label} to backlog"]
    assert sorted(c.kind for c in r.changes_since(middle)) == [
        "released",
        "reopened",
        "task-updated",
    ]

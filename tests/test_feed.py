"""The change feed in artifact terms (`crdtdoc.feed`): raw changes restated per artifact kind,
named by the agents' registry, each carrying the version token they lead to."""

from __future__ import annotations

from crdtdoc import Replica
from tests.support.builders import sync


def test_changes_speak_in_artifact_terms() -> None:
    alice, bob, carol = Replica("alice"), Replica("bob"), Replica("carol")
    backlog = alice.tasks("backlog")
    tid = backlog.add("write migration")
    alice.spec("user-service").set("getUserByEmail", "(email) -> User")
    alice.document("design").write("# Design\n\n\nend\n")
    sync(alice, bob)
    sync(bob, carol)
    mark = carol.version()
    bob.tasks("backlog").claim(tid)
    bob.tasks("backlog").note(tid, "starting now")
    alice.spec("user-service").set("getUserByEmail", "(email: str) -> User")
    carol.document("design").insert(len("# Design\n\n\n"), "x" * 120)
    sync(alice, bob)
    sync(bob, carol)
    sync(alice, bob)
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


def test_a_transaction_note_is_in_the_feed_with_the_artifacts_it_names() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    mark = bob.version()
    with alice.transaction(note="rename the id field", on=["api"]):
        alice.spec("api").set("User.id", "UUID")
    sync(alice, bob)
    described = [c.describe() for c in bob.changes_since(mark)]
    assert described == [
        "alice noted 'rename the id field' (on api)",
        "alice set User.id in api to 'UUID'",
    ]
    assert [c.kind for c in bob.changes_since(mark)] == ["note", "member-set"]


def test_freezing_a_spec_is_one_change_and_long_values_are_shortened() -> None:
    r = Replica("alice")
    mark = r.version()
    r.spec("api").set("User.bio", "x" * 200)
    (change,) = r.changes_since(mark)
    shown = change.summary or ""
    assert shown.startswith("set User.bio in api to 'xxx") and shown.endswith("...")
    assert len(shown) < 100
    frozen = r.version()
    r.spec("api").freeze()
    assert [(c.kind, c.describe()) for c in r.changes_since(frozen)] == [
        ("frozen", "alice froze api")
    ]


def test_removing_a_spec_member_is_said_once_and_a_value_set_over_is_not_a_removal() -> None:
    r = Replica("alice")
    r.spec("api").set("A", 1)
    mark = r.version()
    r.spec("api").set("A", 2)  # overwrites: the old entry is removed by the same agent
    assert [c.kind for c in r.changes_since(mark)] == ["member-set"]
    deleted = r.version()
    r.spec("api").delete("A")
    assert [(c.kind, c.describe()) for c in r.changes_since(deleted)] == [
        ("member-removed", "alice removed a member from api")
    ]


def test_text_inserts_carry_their_line_unless_the_text_is_ambiguous() -> None:
    r = Replica("alice")
    doc = r.document("notes")
    doc.insert(0, "one\ntwo\n")
    mark = r.version()
    doc.insert(len(doc), "three\n")
    (change,) = r.changes_since(mark)
    assert change.line == 3
    again = r.version()
    doc.insert(0, "three\n")  # the same text twice in the document: no line is claimed
    (change,) = r.changes_since(again)
    assert change.line is None


def test_the_feed_names_agents_from_the_registry() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    mark = bob.version()
    alice.document("d").insert(0, "hello")
    sync(alice, bob)
    (change,) = bob.changes_since(mark)
    assert change.agent == "alice" and change.client_id == alice.client_id
    assert change.version == bob.version().token()

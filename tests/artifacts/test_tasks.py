"""TaskList: the failure stories, the status rules, and refusals."""

from __future__ import annotations

import pytest

import crdtdoc
from crdtdoc import Replica
from tests.support.builders import sync


def test_add_get_list_update_and_notes() -> None:
    r = Replica("alice")
    tasks = r.tasks("backlog")
    first = tasks.add("design schema", labels=["db"])
    second = tasks.add("write migration", "the SQL", depends_on=[first])
    assert first != second and len(tasks) == 2 and first in tasks
    tasks.update(second, title="write migration 267", labels=["db", "sql"])
    tasks.note(second, "use a transaction")
    task = tasks.get(second)
    assert (task.title, task.description, task.labels, task.depends_on) == (
        "write migration 267",
        "the SQL",
        ["db", "sql"],
        [first],
    )
    assert [(n.agent, n.text) for n in task.notes] == [("alice", "use a transaction")]
    assert [t.id for t in tasks.list()] == [first, second]
    assert [t.id for t in tasks.ready()] == [first]  # the second waits for the first
    tasks.complete(first)
    assert [t.id for t in tasks.ready()] == [second]
    assert [t.id for t in tasks.list(status="done")] == [first]


def test_claim_refuses_a_claim_it_sees_and_names_the_holder() -> None:
    a, b = Replica("alice"), Replica("bob")
    tid = a.tasks("backlog").add("fix bug 12")
    a.tasks("backlog").claim(tid)
    sync(a, b)
    with pytest.raises(crdtdoc.AlreadyClaimed, match="claimed by alice") as refused:
        b.tasks("backlog").claim(tid)
    assert refused.value.holder == "alice" and refused.value.claimants == ["alice"]
    a.tasks("backlog").claim(tid)  # claiming one's own task again is a no-op
    assert a.tasks("backlog").release(tid) and not a.tasks("backlog").release(tid)
    sync(a, b)
    b.tasks("backlog").claim(tid)
    assert b.tasks("backlog").get(tid).assignee == "bob"


def test_concurrent_claims_are_contested_with_one_assignee_everywhere() -> None:
    a, b, c = Replica("alice"), Replica("bob"), Replica("carol")
    tid = a.tasks("backlog").add("fix bug 12")
    sync(a, b, c)
    for r in (a, b, c):
        r.tasks("backlog").claim(tid)  # none sees the others' claims yet
    sync(a, b, c)
    seen = [r.tasks("backlog").get(tid) for r in (a, b, c)]
    assert all(t.contested and t.status == "claimed" for t in seen)
    assert len({t.assignee for t in seen}) == 1
    assert sorted(seen[0].claimants) == ["alice", "bob", "carol"]
    winner = seen[0].assignee
    for r in (a, b, c):  # each agent finds out whether it holds the task; the others step back
        if r.tasks("backlog").get(tid).assignee != r.agent:
            assert r.tasks("backlog").release(tid)
    sync(a, b, c)
    final = a.tasks("backlog").get(tid)
    assert not final.contested and final.claimants == [winner]
    with pytest.raises(crdtdoc.AlreadyClaimed, match=f"claimed by {winner}"):
        next(r for r in (a, b, c) if r.agent != winner).tasks("backlog").claim(tid)


def test_status_rules() -> None:
    """done while a completion remains; claimed while a claim remains; else open. A reopen
    removes only the completions (and claims) it saw."""
    a, b = Replica("alice"), Replica("bob")
    tasks_a, tasks_b = a.tasks("t"), b.tasks("t")
    tid = tasks_a.add("x")
    assert tasks_a.get(tid).status == "open"
    tasks_a.claim(tid)
    assert tasks_a.get(tid).status == "claimed"
    tasks_a.complete(tid, note="shipped")
    assert tasks_a.get(tid).status == "done" and tasks_a.get(tid).completed_by == ["alice"]
    sync(a, b)
    # Sequential: a reopen that saw the completion makes the task open (claims cleared too).
    tasks_b.reopen(tid)
    sync(a, b)
    assert tasks_a.get(tid).status == "open" and tasks_a.get(tid).claimants == []
    # Concurrent complete and reopen: the reopen did not see the new completion -> done.
    tasks_a.complete(tid)
    sync(a, b)
    tasks_b.reopen(tid)  # sees that completion
    tasks_a.complete(tid)  # meanwhile, a new completion bob has not seen
    sync(a, b)
    assert tasks_a.get(tid).status == tasks_b.get(tid).status == "done"
    # Concurrent notes are all kept.
    tasks_a.note(tid, "from alice")
    tasks_b.note(tid, "from bob")
    sync(a, b)
    texts = [n.text for n in tasks_a.get(tid).notes]
    assert {"from alice", "from bob", "shipped"} <= set(texts)
    assert texts == [n.text for n in tasks_b.get(tid).notes]  # same order everywhere


def test_bad_input_gets_clear_errors() -> None:
    tasks = Replica("a").tasks("t")
    with pytest.raises(crdtdoc.InvalidValue, match="non-empty title"):
        tasks.add("  ")
    with pytest.raises(crdtdoc.InvalidValue, match="list of str"):
        tasks.add("x", labels="db")  # type: ignore[arg-type]
    with pytest.raises(crdtdoc.NotFound, match="no task 'nope'"):
        tasks.get("nope")
    with pytest.raises(crdtdoc.CrdtdocError, match="status must be one of"):
        tasks.list(status="finished")
    tid = tasks.add("x")
    tasks.complete(tid)
    with pytest.raises(crdtdoc.CrdtdocError, match="reopen it"):
        tasks.claim(tid)


def test_a_root_is_one_kind_of_artifact() -> None:
    a, b = Replica("a"), Replica("b")
    a.tasks("backlog").add("x")
    b.apply_update(a.encode_update())
    with pytest.raises(crdtdoc.CrdtdocError, match="is a task list; it cannot also be used as"):
        b.spec("backlog")
    assert b.artifacts() == {"backlog": "tasks"}


def test_releasing_a_claim_one_does_not_have_says_so_when_strict() -> None:
    a, b = Replica("alice"), Replica("bob")
    task = b.tasks("backlog").add("ship")
    b.tasks("backlog").claim(task)
    sync(a, b)
    assert a.tasks("backlog").release(task) is False  # the library's answer, as before
    with pytest.raises(crdtdoc.NotFound, match=r"alice has no claim .* claimed by bob"):
        a.tasks("backlog").release(task, strict=True)
    assert a.tasks("backlog").get(task).assignee == "bob"


def test_a_done_task_is_described_with_who_completed_it() -> None:
    """A task bob claimed and alice completed read "[done by bob]"."""
    a, b = Replica("alice"), Replica("bob")
    task = b.tasks("backlog").add("ship")
    b.tasks("backlog").claim(task)
    sync(a, b)
    a.tasks("backlog").complete(task)
    assert a.tasks("backlog").get(task).describe().startswith("[done by alice]")


def test_the_old_exclusive_claim_says_where_it_moved() -> None:
    import asyncio

    from crdtdoc import Replica, UsageError

    tasks = Replica("alice").tasks("backlog")
    task = tasks.add("write it")
    with pytest.raises(UsageError, match=r"await replica.claim_task\('backlog'"):
        asyncio.run(tasks.acquire(task))


def test_a_second_verification_by_the_same_agent_writes_nothing() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    task = alice.tasks("t").add("x", verify=1)
    alice.tasks("t").complete(task)
    bob.apply_update(alice.encode_update())
    bob.tasks("t").verify(task)
    version = bob.version()
    bob.tasks("t").verify(task)
    assert bob.version() == version and bob.tasks("t").get(task).status == "done"

"""Property tests: task lists and specs on the simulated network (loss, duplication, reordering,
partitions) converge, lose nothing, and show conflicts exactly when writes were concurrent."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

import crdtdoc
from crdtdoc import Replica, Version
from crdtdoc.sim import SimNetwork

N = 3
MEMBERS = ["User.id", "getUser", "listUsers"]


@dataclass
class SpecWrite:
    member: str
    value: str
    before: Version  # what its writer had seen
    after: Version


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, N - 1)),
        st.tuples(st.just("claim"), st.integers(0, N - 1), st.integers(0, 20)),
        st.tuples(st.just("note"), st.integers(0, N - 1), st.integers(0, 20)),
        st.tuples(st.just("complete"), st.integers(0, N - 1), st.integers(0, 20)),
        st.tuples(st.just("set"), st.integers(0, N - 1), st.sampled_from(MEMBERS)),
        st.tuples(st.just("deliver"), st.integers(1, 15)),
        st.tuples(st.just("partition"), st.integers(0, N - 1)),
        st.tuples(
            st.just("heal"),
        ),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 2**16))
def test_artifacts_converge_lose_nothing_and_conflict_exactly_when_concurrent(
    script: list[tuple[object, ...]], seed: int
) -> None:
    net = SimNetwork(
        [Replica(f"agent{i}") for i in range(N)], seed=seed, loss=0.1, duplicate=0.1, reorder=0.3
    )
    nodes = net.nodes
    tasks_added: list[str] = []
    notes: dict[str, set[str]] = {}
    claims: dict[str, set[str]] = {}
    completed: set[str] = set()
    writes: list[SpecWrite] = []
    counter = 0
    for op in script:
        kind = op[0]
        if kind == "add":
            tid = nodes[op[1]].tasks("backlog").add(f"task {len(tasks_added)}")  # type: ignore[index]
            tasks_added.append(tid)
            continue
        if kind in ("claim", "note", "complete"):
            r = nodes[op[1]]  # type: ignore[index]
            visible = r.tasks("backlog").ids()
            if not visible:
                continue
            tid = sorted(visible)[op[2] % len(visible)]  # type: ignore[operator]
            if kind == "claim":
                try:
                    r.tasks("backlog").claim(tid)
                    claims.setdefault(tid, set()).add(r.agent)
                except crdtdoc.AlreadyClaimed:
                    pass
                except crdtdoc.CrdtdocError:  # done: claiming is refused
                    pass
            elif kind == "note":
                counter += 1
                r.tasks("backlog").note(tid, f"note {counter}")
                notes.setdefault(tid, set()).add(f"note {counter}")
            else:
                r.tasks("backlog").complete(tid)
                completed.add(tid)
        elif kind == "set":
            r = nodes[op[1]]  # type: ignore[index]
            counter += 1
            before = r.version()
            r.spec("api").set(op[2], f"v{counter}")  # type: ignore[arg-type]
            writes.append(SpecWrite(op[2], f"v{counter}", before, r.version()))  # type: ignore[arg-type]
        elif kind == "deliver":
            for _ in range(op[1]):  # type: ignore[misc]
                net.step()
        elif kind == "partition":
            alone = op[1]
            net.partition([alone], [i for i in range(N) if i != alone])
        else:
            net.heal()
    net.converge()

    # Every replica reads the same artifacts.
    views = [
        ([t for t in r.tasks("backlog").list()], r.spec("api").conflicts(), r.spec("api").to_dict())
        for r in nodes
    ]
    assert all(v == views[0] for v in views), f"seed {seed}: replicas differ"
    tasks = nodes[0].tasks("backlog")
    # No task, note, claim or completion is lost.
    assert sorted(tasks.ids()) == sorted(tasks_added)
    for tid, texts in notes.items():
        assert texts <= {n.text for n in tasks.get(tid).notes}
    for tid in tasks_added:
        task = tasks.get(tid)
        assert set(task.claimants) == claims.get(tid, set())
        assert task.contested == (task.status != "done" and len(claims.get(tid, set())) > 1)
        assert (task.status == "done") == (tid in completed)
    # A spec value survives exactly when no later write of its member saw it.
    spec = nodes[0].spec("api")
    for member in MEMBERS:
        same = [w for w in writes if w.member == member]
        expected = sorted(
            w.value for w in same if not any(w.after <= other.before for other in same)
        )
        assert sorted(v.value for v in spec.values(member)) == expected, f"seed {seed}"
        assert (member in spec.conflicts()) == (len(expected) > 1)

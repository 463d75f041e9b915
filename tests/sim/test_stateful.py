"""A Hypothesis state machine over replicas on the simulated network.

Rules: edits, delivery, drops, duplicates, partitions, heals, flushes, and restarts from the saved
file. After every step: no replica is broken and each replica's version only grows. At the end:
after healing, all replicas are identical and every write ever made is present.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crdtdoc import Replica, Version
from crdtdoc.sim import SimNetwork
from tests.support.builders import content, random_edit

N = 4


class ReplicasOnAFaultyNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="crdtdoc-sm-"))
        self.net = SimNetwork([Replica(f"agent{i}") for i in range(N)], seed=0)
        self.last: list[Version] = [r.version() for r in self.net.nodes]
        self.writes: set[str] = set()
        self.counter = 0

    @rule(node=st.integers(0, N - 1), seed=st.integers(0, 2**16))
    def edit(self, node: int, seed: int) -> None:
        random_edit(self.net.nodes[node], random.Random(seed))

    @rule(node=st.integers(0, N - 1))
    def record_a_write(self, node: int) -> None:
        """A write that must never be lost (never deleted by anyone)."""
        self.counter += 1
        key = f"w{self.counter}"
        self.net.nodes[node].map("writes").set(key, node)
        self.writes.add(key)

    @precondition(lambda self: self.net.in_flight() > 0)
    @rule(count=st.integers(1, 10))
    def deliver(self, count: int) -> None:
        for _ in range(count):
            self.net.step()

    @precondition(lambda self: self.net.in_flight() > 0)
    @rule(pick=st.integers(0, 10**6), position=st.integers(0, 10**6))
    def deliver_out_of_order(self, pick: int, position: int) -> None:
        links = self._queued_links()
        i, j = links[pick % len(links)]
        self.net.deliver(i, j, position % len(self.net._queues[(i, j)]))

    @precondition(lambda self: self.net.history)
    @rule(node=st.integers(0, N - 1), pick=st.integers(0, 10**6))
    def relay_any_update(self, node: int, pick: int) -> None:
        self.net.relay(node, pick)

    def _queued_links(self) -> list[tuple[int, int]]:
        return [link for link, q in self.net._queues.items() if q]

    @precondition(lambda self: self.net.in_flight() > 0)
    @rule(pick=st.integers(0, 10**6))
    def drop(self, pick: int) -> None:
        links = self._queued_links()
        self.net.drop(*links[pick % len(links)])

    @precondition(lambda self: self.net.in_flight() > 0)
    @rule(pick=st.integers(0, 10**6))
    def duplicate(self, pick: int) -> None:
        links = self._queued_links()
        self.net.duplicate_message(*links[pick % len(links)])

    @rule(members=st.lists(st.integers(0, N - 1), min_size=1, max_size=N - 1, unique=True))
    def partition(self, members: list[int]) -> None:
        rest = [i for i in range(N) if i not in members]
        self.net.partition(members, rest)

    @rule()
    def heal(self) -> None:
        self.net.heal()

    @rule()
    def flush(self) -> None:
        self.net.anti_entropy()

    @rule(node=st.integers(0, N - 1))
    def restart_from_saved_file(self, node: int) -> None:
        path = self.dir / f"agent{node}.replica"
        old = self.net.nodes[node]
        old.save(str(path))
        restarted = Replica.load(str(path))
        assert restarted.version() == old.version()
        assert content(restarted) == content(old)
        self.net.replace(node, restarted)

    @invariant()
    def replicas_are_healthy_and_versions_only_grow(self) -> None:
        for i, r in enumerate(self.net.nodes):
            version = r.version()
            content(r)  # readable
            assert self.last[i] <= version, f"agent{i} went back: {self.last[i]} -> {version}"
            self.last[i] = version

    def teardown(self) -> None:
        try:
            self.net.converge(max_rounds=10)
            first = self.net.nodes[0]
            reference = self.net.reference()
            assert content(first) == content(reference)
            assert first.version() == reference.version()
            for r in self.net.nodes:
                assert not r.pending()
                assert r.version() == first.version()
                assert content(r) == content(first)
                missing = self.writes - set(r.map("writes").keys())
                assert not missing, f"lost writes: {sorted(missing)}"
        finally:
            for path in self.dir.iterdir():
                path.unlink()
            self.dir.rmdir()


TestReplicasOnAFaultyNetwork = ReplicasOnAFaultyNetwork.TestCase
TestReplicasOnAFaultyNetwork.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)

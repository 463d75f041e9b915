"""`SimNetwork`: replicas talking y-protocols sync over simulated links that misbehave on demand.

Every pair of nodes has a connection with one message queue per direction. Messages can be lost,
duplicated, delayed and reordered (at random rates or one at a time), nodes can be partitioned into
groups, cut off and brought back, and replaced by a restarted replica. A connection that goes down
loses what was in flight, as a real one does; when it comes back both sides send sync step 1.
Everything is driven by one seeded `random.Random`, so a failing run replays exactly from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crdtdoc.errors import CrdtdocError, RemoteError
from crdtdoc.protocol.session import SyncSession
from crdtdoc.replica import Replica


class NotConverged(CrdtdocError):
    """`converge()` ran out of rounds with replicas still different."""


@dataclass
class _Message:
    data: bytes
    due: int  # simulated tick from which it may be delivered


@dataclass
class LinkStats:
    """Counters over the whole run."""

    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    bytes_sent: int = 0
    errors: int = 0


class SimNetwork:
    """N replicas, fully meshed, exchanging sync messages through faulty queues."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        max_delay: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        self.nodes: list[Replica] = list(replicas)
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.max_delay = max_delay
        self.now = 0
        self.stats = LinkStats()
        self.errors: list[str] = []
        self.history: list[bytes] = []
        """Every local update any node made, in the order made (a causal order): the oracle."""
        n = len(self.nodes)
        self._queues: dict[tuple[int, int], list[_Message]] = {
            (i, j): [] for i in range(n) for j in range(n) if i != j
        }
        self._sessions: dict[tuple[int, int], SyncSession] = {}
        self._unsubscribe: list[object] = [None] * n
        self._group = [0] * n  # nodes talk only within their partition group
        self._down: set[int] = set()  # nodes cut off from everyone
        for i in range(n):
            self._attach(i)
        for i in range(n):
            for j in range(i + 1, n):
                self._connect(i, j)

    # -- topology --------------------------------------------------------------------------

    def connected(self, i: int, j: int) -> bool:
        return (
            i != j
            and i not in self._down
            and j not in self._down
            and self._group[i] == self._group[j]
        )

    def _attach(self, i: int) -> None:
        replica = self.nodes[i]

        def on_update(update: bytes, local: bool, i: int = i) -> None:
            if local:
                self.history.append(update)
                for j in range(len(self.nodes)):
                    if self.connected(i, j):
                        self._send(i, j, self._sessions[(i, j)].local_update(update))

        self._unsubscribe[i] = replica.on_update(on_update)
        for j in range(len(self.nodes)):
            if j != i:
                self._sessions[(i, j)] = SyncSession(replica)

    def _connect(self, i: int, j: int) -> None:
        for a, b in ((i, j), (j, i)):
            for data in self._sessions[(a, b)].open():
                self._send(a, b, data)

    def _set_topology(self, groups: list[int], down: set[int]) -> None:
        n = len(self.nodes)
        before = {(i, j) for i in range(n) for j in range(i + 1, n) if self.connected(i, j)}
        self._group, self._down = groups, down
        after = {(i, j) for i in range(n) for j in range(i + 1, n) if self.connected(i, j)}
        for i, j in sorted(before - after):
            self._queues[(i, j)].clear()
            self._queues[(j, i)].clear()
        for i, j in sorted(after - before):
            self._connect(i, j)

    def partition(self, *groups: Iterable[int]) -> None:
        """Splits the nodes into groups that cannot reach each other (unlisted nodes: own group)."""
        assignment = list(range(len(self.nodes), 2 * len(self.nodes)))
        for g, members in enumerate(groups):
            for i in members:
                assignment[i] = g
        self._set_topology(assignment, set(self._down))

    def heal(self) -> None:
        """Removes every partition and brings every node back."""
        self._set_topology([0] * len(self.nodes), set())

    def disconnect(self, i: int) -> None:
        self._set_topology(list(self._group), self._down | {i})

    def reconnect(self, i: int) -> None:
        self._set_topology(list(self._group), self._down - {i})

    def replace(self, i: int, replica: Replica) -> None:
        """Swaps node `i` for `replica` (a restart): its connections drop and come back."""
        down = set(self._down)
        self._set_topology(list(self._group), down | {i})
        unsubscribe = self._unsubscribe[i]
        if callable(unsubscribe):
            unsubscribe()
        self.nodes[i] = replica
        self._attach(i)
        self._set_topology(list(self._group), down)

    # -- messages --------------------------------------------------------------------------

    def _send(self, i: int, j: int, data: bytes) -> None:
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        if self.loss and self.rng.random() < self.loss:
            self.stats.dropped += 1
            return
        copies = 1
        if self.duplicate and self.rng.random() < self.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            due = self.now + (self.rng.randint(0, self.max_delay) if self.max_delay else 0)
            self._queues[(i, j)].append(_Message(data, due))

    def in_flight(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _deliverable(self) -> list[tuple[int, int]]:
        return [link for link, q in self._queues.items() if any(m.due <= self.now for m in q)]

    def deliver(self, i: int, j: int, index: int = 0) -> None:
        """Delivers the `index`-th message queued from node i to node j."""
        message = self._queues[(i, j)].pop(index)
        self.stats.delivered += 1
        try:
            replies = self._sessions[(j, i)].receive(message.data)
        except RemoteError as exc:
            # A real endpoint closes the connection on bad input; the link restarts.
            self.stats.errors += 1
            self.errors.append(f"{j} <- {i}: {exc}")
            self._queues[(i, j)].clear()
            self._queues[(j, i)].clear()
            self._connect(i, j)
            return
        for reply in replies:
            if self.connected(i, j):
                self._send(j, i, reply)

    def relay(self, node: int, index: int) -> None:
        """Delivers `history[index]` to `node` out of band, as a hub forwarding a third party's
        update does: any update, from anyone, in any order."""
        if not self.history:
            return
        update = self.history[index % len(self.history)]
        self.stats.delivered += 1
        self.nodes[node].apply_update(update)

    def drop(self, i: int, j: int, index: int = 0) -> None:
        """Loses one queued message."""
        self._queues[(i, j)].pop(index)
        self.stats.dropped += 1

    def duplicate_message(self, i: int, j: int, index: int = 0) -> None:
        """Queues a second copy of one message at the end of its queue."""
        self._queues[(i, j)].append(self._queues[(i, j)][index])
        self.stats.duplicated += 1

    def step(self) -> bool:
        """Delivers one message (a random link; a random position when reordering).

        Advances simulated time when only delayed messages remain. False when nothing is queued.
        """
        while True:
            links = self._deliverable()
            if links:
                break
            if not self.in_flight():
                return False
            self.now += 1
        i, j = links[self.rng.randrange(len(links))]
        queue = self._queues[(i, j)]
        ready = [k for k, m in enumerate(queue) if m.due <= self.now]
        index = ready[0]
        if self.reorder and self.rng.random() < self.reorder:
            index = ready[self.rng.randrange(len(ready))]
        self.deliver(i, j, index)
        return True

    def run(self, max_messages: int = 1_000_000) -> int:
        """Delivers until no message is in flight; returns how many were delivered."""
        count = 0
        while count < max_messages and self.step():
            count += 1
        return count

    def anti_entropy(self) -> None:
        """Every connected pair exchanges sync step 1, as a reconnect or a periodic check does."""
        for (i, j), session in self._sessions.items():
            if self.connected(i, j):
                self._send(i, j, session.step1())

    # -- convergence -----------------------------------------------------------------------

    def reference(self) -> Replica:
        """A replica that received every local update in the order made: what all must equal."""
        reference = Replica("reference")
        for update in self.history:
            reference.apply_update(update)
        return reference

    def converged(self) -> bool:
        first = self.nodes[0].version()
        return all(not r.pending() and r.version() == first for r in self.nodes)

    def converge(self, max_rounds: int = 20, *, faults: bool = False) -> int:
        """Heals everything and syncs until all replicas agree; returns the rounds it took.

        With `faults=False` (the default) loss and duplication are switched off while converging.
        Raises `NotConverged` after `max_rounds` rounds.
        """
        saved = (self.loss, self.duplicate)
        if not faults:
            self.loss = self.duplicate = 0.0
        try:
            self.heal()
            self.run()
            rounds = 0
            while not self.converged():
                if rounds >= max_rounds:
                    versions = [repr(r.version()) for r in self.nodes]
                    raise NotConverged(f"not converged after {rounds} rounds: {versions}")
                rounds += 1
                self.anti_entropy()
                self.run()
            return rounds
        finally:
            self.loss, self.duplicate = saved

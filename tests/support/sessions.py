"""Random editing sessions of several agents on one text, for history, blame and revert tests.

Each agent types only its own letter (alice "a", bob "b", carol an emoji, which is two UTF-16
units in Yjs and four UTF-8 bytes in yrs), so whoever wrote a character can be told by looking
at it. Agents sync pairwise at random; every replica keeps history. After each local edit the
session records the editor's version and text: what `Replica.at` must show for that version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crdtdoc import Replica, Version

LETTERS = {"alice": "a", "bob": "b", "carol": "\U0001f600"}
DOC = "d"


@dataclass
class Session:
    replicas: dict[str, Replica]
    seen: list[tuple[Version, str]] = field(default_factory=list)  # (version, text then)

    def sync(self, a: str, b: str) -> None:
        x, y = self.replicas[a], self.replicas[b]
        y.apply_update(x.encode_update(since=y.version()))
        x.apply_update(y.encode_update(since=x.version()))

    def sync_all(self) -> None:
        names = list(self.replicas)
        for _ in range(2):
            for a in names:
                for b in names:
                    if a != b:
                        self.sync(a, b)

    def edit(self, rng: random.Random, agent: str) -> None:
        doc = self.replicas[agent].document(DOC)
        text = doc.read()
        if text and rng.random() < 0.35:
            at = rng.randrange(len(text))
            doc.delete(at, rng.randint(1, min(4, len(text) - at)))
        else:
            doc.insert(rng.randint(0, len(text)), LETTERS[agent] * rng.randint(1, 4))
        replica = self.replicas[agent]
        self.seen.append((replica.version(), doc.read()))


def run_session(seed: int, steps: int = 30, agents: tuple[str, ...] = tuple(LETTERS)) -> Session:
    """A session of `steps` random edits and syncs, its replicas keeping history."""
    rng = random.Random(seed)
    session = Session(
        {a: Replica(a, history=True, client_id=rng.randrange(1, 2**32)) for a in agents}
    )
    for _ in range(steps):
        agent = rng.choice(agents)
        if rng.random() < 0.3 and len(agents) > 1:
            session.sync(agent, rng.choice([a for a in agents if a != agent]))
        else:
            session.edit(rng, agent)
    return session

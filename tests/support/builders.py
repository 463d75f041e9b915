"""Builders of real updates for tests: several writers editing and partly syncing with pycrdt,
and `sync`, the full exchange between replicas a hub would make."""

from __future__ import annotations

import random

from pycrdt import Doc, Text

from crdtdoc import Replica

ALPHABET = ["a", "b", "xyz", "é", "😀", "中文", "\n", " "]


def random_edit(replica: Replica, rng: random.Random) -> None:
    """One random text or map edit (or deletion) on `replica`."""
    roll = rng.random()
    if roll < 0.45:
        doc = replica.document("text")
        doc.insert(rng.randint(0, len(doc)), rng.choice(ALPHABET))
    elif roll < 0.65:
        doc = replica.document("text")
        if len(doc):
            index = rng.randrange(len(doc))
            doc.delete(index, min(rng.randint(1, 4), len(doc) - index))
    elif roll < 0.9:
        replica.map("map").set(rng.choice("klmn"), rng.choice([rng.randint(-9, 9), "s", None, 1.5]))
    else:
        replica.map("map").delete(rng.choice("klmn"))


def writer_stream(seed: int, writers: int = 3, steps: int = 40) -> list[bytes]:
    """Updates from several writers who sometimes see each other's work, in a causal order.

    Returns every update in the order it was made (a valid in-order delivery).
    """
    rng = random.Random(seed)
    replicas = [Replica(f"w{i}", client_id=100 + i) for i in range(writers)]
    log: list[bytes] = []
    for r in replicas:
        r.on_update(lambda update, local: log.append(update) if local else None)
    seen = [0] * writers  # how much of the log each writer has received
    for _ in range(steps):
        w = rng.randrange(writers)
        if rng.random() < 0.3:
            for update in log[seen[w] :]:
                replicas[w].apply_update(update)
            seen[w] = len(log)
        random_edit(replicas[w], rng)
    return log


def sync(*replicas: Replica) -> None:
    """Full exchange between every pair (as a hub would do)."""
    for a in replicas:
        for b in replicas:
            if a is not b:
                b.apply_update(a.encode_update(since=b.version()))


def content(replica: Replica) -> tuple[str, dict[str, object]]:
    return replica.document("text").read(), replica.map("map").to_dict()


def tiny_structs(count: int, client: int, root: str = "t") -> bytes:
    """One update of `count` one-character inserts that do not merge (each at the front): the
    most structs per byte an honest-looking update can carry."""
    doc = Doc(client_id=client)
    text = doc.get(root, type=Text)
    with doc.transaction():
        for _ in range(count):
            text.insert(0, "x")
    return doc.get_update()


def orphans(count: int, client: int) -> list[bytes]:
    """`count` one-struct updates of `client`, all built on a first one that is never sent."""
    doc = Doc(client_id=client)
    text = doc.get("t", type=Text)
    updates = []
    for i in range(count + 1):
        before = doc.get_state()
        text.insert(0, str(i % 10))
        updates.append(doc.get_update(before))
    return updates[1:]


def typed(ops: list[tuple[int, str]], client: int) -> list[bytes]:
    """The updates a pycrdt client `client` makes inserting each (index, text) of `ops` into
    its text "t", one transaction each."""
    doc: Doc = Doc(client_id=client)
    text = doc.get("t", type=Text)
    out: list[bytes] = []
    doc.observe(lambda event: out.append(event.update))
    for index, chars in ops:
        text.insert(index, chars)
    return out

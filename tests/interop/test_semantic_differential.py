"""The semantic gate against the engines themselves: every update a replica accepts reads the
same in Yjs (npm yjs, from the lockfile) as in yrs (pycrdt), and the engine never refuses it.

Random single-item updates, each placed anywhere in a base document (under any root, map key or
nested type id, or between any two existing ids, garbage-collected ones included) with any
content kind, are offered to a fresh `Replica` holding the base. The gate refuses some; for every
other one, pycrdt must have applied it without complaint and Yjs must render the same roots.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdtdoc import InvalidUpdate, Replica
from crdtdoc.updates import parse_update
from tests.interop.test_yjs_peer import node_peer_available
from tests.support.yjs_items import content, item, update

HERE = Path(__file__).parent
ROOTS = [("t", "text"), ("m", "map"), ("arr", "array")]
KINDS = ("string", "any", "embed", "format", "binary", "type", "deleted")
TYPE_NAMES = ("Map", "Array", "Text", "XmlText", "XmlFragment")
CASES = int(os.environ.get("CRDTDOC_DIFF_CASES", "500"))


def base_update() -> bytes:
    """A document with texts, maps, arrays, nested types and a garbage-collected range."""
    a = Doc(client_id=1000)
    t, m, arr = a.get("t", type=Text), a.get("m", type=Map), a.get("arr", type=Array)
    with a.transaction():
        t.insert(0, "hello world")
    with a.transaction():
        m["a"] = 1
        m["n"] = Map({"x": 1})
        m["s"] = Text("sub")
    with a.transaction():
        m["gone"] = Array([1, 2, 3])
    with a.transaction():
        del m["gone"]  # its items become garbage-collected
    with a.transaction():
        arr.extend([1, 2, "three"])
        arr.append(Map({"y": 2}))
    b = Doc(client_id=1001)
    b.apply_update(a.get_update())
    with b.transaction():
        b.get("t", type=Text).insert(5, ",")
        b.get("m", type=Map)["a"] = 2
    a.apply_update(b.get_update())
    return a.get_update()


def hostile(rng: random.Random, client: int, ids: list[tuple[int, int]]) -> bytes:
    kind = rng.choice(KINDS)
    value: Any = None
    if kind == "type":
        value = rng.choice(TYPE_NAMES)
    elif kind == "any":
        value = [rng.choice([7, "v", None, True, {"k": 1}])]
    elif kind == "string":
        value = rng.choice(["Z", "zz", "é"])
    ref, body, _ = content(kind, value)
    mode = rng.choice(["root", "root", "parent", "origin", "right", "both", "both", "both"])
    pick = lambda: rng.choice(ids)  # noqa: E731
    if mode == "root":
        root = rng.choice([name for name, _ in ROOTS])
        key = rng.choice([None, "a", "n", "k"])
        struct = item(ref, body, root=root, key=key)
    elif mode == "parent":
        struct = item(ref, body, parent=pick(), key=rng.choice([None, "x", "k"]))
    elif mode == "origin":
        struct = item(ref, body, origin=pick())
    elif mode == "right":
        struct = item(ref, body, right=pick())
    else:
        struct = item(ref, body, origin=pick(), right=pick())
    return update(client, 0, [struct])


def render(value: Any) -> Any:
    """The engine-neutral rendering also produced by yjs_render.mjs."""
    if isinstance(value, (XmlText, XmlFragment, XmlElement)):
        return {"$xml": str(value)}
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, Map):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, Array):
        return [render(v) for v in value]
    if isinstance(value, Doc):
        return {"$doc": True}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def yrs_view(base: bytes, case: bytes) -> Any:
    doc: Doc[Any] = Doc(client_id=1)
    doc.apply_update(base)
    doc.apply_update(case)
    kinds = {"text": Text, "map": Map, "array": Array}
    return {name: render(doc.get(name, type=kinds[kind])) for name, kind in ROOTS}


def test_every_update_the_gate_accepts_reads_the_same_in_yjs_and_yrs() -> None:
    node_peer_available()
    seed = int(os.environ.get("CRDTDOC_SEED") or random.randrange(2**32))
    print(f"seed {seed} (replay with CRDTDOC_SEED={seed})")
    rng = random.Random(seed)
    base = base_update()
    ids = [
        (i.client, i.clock + k)
        for i in parse_update(base, details=True).items or []
        for k in range(i.length)
    ]
    accepted: list[bytes] = []
    refused: dict[str, int] = {}
    for n in range(CASES):
        case = hostile(rng, 2_000_000 + n, ids)
        replica = Replica("judge")
        replica.apply_update(base)
        try:
            replica.apply_update(case)
        except InvalidUpdate as exc:
            rule = str(exc).split("'")[1] if "semantic rule" in str(exc) else "parser/engine"
            assert "engine" not in str(exc), f"seed {seed}: the engine refused {case.hex()}"
            refused[rule] = refused.get(rule, 0) + 1
            continue
        accepted.append(case)
    assert len(accepted) > CASES // 5, f"seed {seed}: the gate refused almost everything"
    assert {"neighbours", "collected", "parent", "map value", "sequence"} <= set(refused), refused
    node = subprocess.run(
        ["node", str(HERE / "yjs_render.mjs")],
        input=json.dumps(
            {"base": base.hex(), "cases": [c.hex() for c in accepted], "roots": ROOTS}
        ),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=120,
    )
    assert node.returncode == 0, node.stderr[-2000:]
    yjs_views = json.loads(node.stdout)
    for case, yjs in zip(accepted, yjs_views, strict=True):
        assert yrs_view(base, case) == yjs, f"seed {seed}: Yjs and yrs differ on {case.hex()}"

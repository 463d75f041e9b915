"""`crdtdoc.safe_read`: the rules every reader follows, and a property over random damage: whatever
entries of whatever content kinds land in the artifacts' maps, the bookkeeping registries and
logs, nested task maps or a text, no reader raises anything but a `CrdtdocError`."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

import crdtdoc
from crdtdoc import safe_read
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT, DELETIONS_ROOT, NOTES_ROOT
from crdtdoc.safe_read import ABSENT
from tests.artifacts.test_damaged_entries import EVIL, read_all, team
from tests.support.yjs_items import CONTENT_KINDS, TYPE_REFS, RawWriter, apply_raw, nested_type_id


def doc_with(kind: str, value: Any = None, key: str = "bad") -> tuple[Doc[Any], Map[Any]]:
    """A pycrdt Doc whose map "m" holds {"ok": 1} and one entry `key` of this content kind."""
    doc: Doc[Any] = Doc()
    shared = doc.get("m", type=Map)
    shared["ok"] = 1
    doc.apply_update(RawWriter(EVIL).entry(key, kind, value, root="m"))
    return doc, shared


def test_a_format_entry_is_left_out_by_every_read() -> None:
    _, shared = doc_with("format")
    with pytest.raises(KeyError):
        shared.to_py()  # the engine's own whole-map read
    assert safe_read.entries(shared) == [("ok", 1.0)]
    assert safe_read.entry(shared, "bad") is ABSENT
    assert safe_read.json_entries(shared) == {"ok": 1}
    assert safe_read.json_entry(shared, "bad") is ABSENT and not safe_read.has(shared, "bad")


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("any", [{"a": [1, 2.5, None, True]}], {"a": [1, 2.5, None, True]}),
        ("any", [2**40], 2**40),
        ("any", ["x", "y"], "y"),  # several values: the last one, as Yjs reads a map entry
        ("string", "hello", "hello"),  # whole (yrs); Yjs shows "o": refused before applying
        ("embed", {"image": "x.png"}, {"image": "x.png"}),
        ("type", "Map", {}),
        ("type", "Array", []),
        ("type", "Text", ""),
        ("binary", None, ABSENT),
        ("doc", None, ABSENT),
        ("type", "XmlElement", ABSENT),
        ("type", "XmlFragment", ABSENT),
        ("type", "XmlText", ABSENT),
        ("any", [float("nan")], ABSENT),
        ("any", [float("inf")], ABSENT),
        ("any", [{"blob": b"\x00"}], ABSENT),  # one plain value: whole or damaged
        ("any", [[1, b"\x00"]], ABSENT),
        ("deleted", None, ABSENT),
        ("format", None, ABSENT),
    ],
)
def test_values_read_as_their_json_view(kind: str, value: Any, shown: Any) -> None:
    _, shared = doc_with(kind, value)
    assert safe_read.json_entry(shared, "bad") == shown
    expected = {"ok": 1} if shown is ABSENT else {"ok": 1, "bad": shown}
    assert safe_read.json_entries(shared) == expected


def test_inside_shared_types_each_entry_stands_alone() -> None:
    doc: Doc[Any] = Doc()
    outer = doc.get("m", type=Map)
    outer["inner"] = Map({"good": 1, "text": Text("hi")})
    outer["list"] = Array([1, {"x": 2}])
    full = doc.get_update()
    inner = nested_type_id(full, "inner", "m")
    evil = RawWriter(EVIL)
    doc.apply_update(evil.entry("fmt", "format", parent=inner))
    doc.apply_update(evil.entry("bin", "binary", parent=inner))
    doc.apply_update(evil.entry("xml", "type", "XmlFragment", parent=inner))
    with pytest.raises((KeyError, ValueError)):
        outer.to_py()
    assert safe_read.json_entries(outer) == {
        "inner": {"good": 1, "text": "hi"},
        "list": [1, {"x": 2}],
    }


def test_nesting_beyond_the_limit_is_damaged() -> None:
    deep: Any = "leaf"
    for _ in range(safe_read.MAX_READ_DEPTH + 1):
        deep = [deep]
    assert safe_read.json_value(deep) is ABSENT
    shallow: Any = "leaf"
    for _ in range(safe_read.MAX_READ_DEPTH - 1):
        shallow = [shallow]
    assert safe_read.json_value(shallow) == shallow


def test_engine_failures_are_recognised_panics_included() -> None:
    PanicException = type("PanicException", (BaseException,), {})
    assert safe_read.engine_failed(KeyError("k")) and safe_read.engine_failed(PanicException())
    assert safe_read.engine_failed(ValueError()) and safe_read.engine_failed(RuntimeError())
    assert not safe_read.engine_failed(KeyboardInterrupt())

    class Panicky:
        """A map whose whole reads and one entry panic, as pycrdt may."""

        def items(self) -> Any:
            raise PanicException("boom")

        def keys(self) -> list[str]:
            return ["good", "bad"]

        def get(self, key: str, default: Any) -> Any:
            if key == "bad":
                raise PanicException("boom")
            return "fine"

    assert safe_read.entries(Panicky()) == [("good", "fine")]  # type: ignore[arg-type]

    class Unlistable(Panicky):
        def keys(self) -> list[str]:
            raise PanicException("boom")

    with pytest.raises(crdtdoc.CrdtdocError, match="cannot list"):
        safe_read.entries(Unlistable())  # type: ignore[arg-type]

    class Interrupted(Panicky):
        def items(self) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_read.entries(Interrupted())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "client"),
    [("0", 0), ("42", 42), (str(2**53 - 1), 2**53 - 1), (str(2**53), None), ("042", None)],
)
def test_client_id_keys(key: str, client: int | None) -> None:
    assert safe_read.client_id_of(key) == client


@pytest.mark.parametrize("key", ["", "-1", "+1", "1.0", "²", "١٢", " 1", "1 ", "0x10", "abc"])
def test_keys_that_name_no_client(key: str) -> None:
    assert safe_read.client_id_of(key) is None


def test_registry_shapes() -> None:
    assert safe_read.agent_name("alice") == "alice"
    assert [safe_read.agent_name(v) for v in ("", 5, None, ["a"], {"a": 1})] == [None] * 5
    assert safe_read.artifact_kind("cfg", "map") == "map"
    assert safe_read.artifact_kind("cfg", "spreadsheet") is None
    assert safe_read.artifact_kind("", "map") is None
    assert safe_read.artifact_kind(NOTES_ROOT, "map") is None
    assert safe_read.artifact_kind("cfg", 5) is None


def test_shapes() -> None:
    assert safe_read.number(3) == 3.0 and safe_read.number(2.5) == 2.5
    assert [safe_read.number(v) for v in (True, "3", None, math.nan, math.inf, [1])] == [None] * 6
    assert safe_read.string_list(["a", 1, None, "b"]) == ["a", "b"]
    assert safe_read.string_list("ab") == [] and safe_read.string_list({"a": 1}) == []
    assert safe_read.text_field("t") == "t" and safe_read.text_field(5) == ""


# -- the property --------------------------------------------------------------------------

MAP_TARGETS = [
    "cfg",
    "backlog",
    "api",
    ARTIFACTS_ROOT,
    AGENTS_ROOT,
    "task",
    "claims",
    "completions",
]
ARRAY_TARGETS = ["notes", DELETIONS_ROOT, NOTES_ROOT]
KEYS = ["a", "bad", "frozen", "m:x", "title", "labels", "notes", "claims", "1", "2", "²", "007"]

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
)
any_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


# A string item holding anything but ASCII inside a Y.Array hangs pycrdt 0.14.13 forever on any
# read or append past it (`for v in array`, `str(array)`, `array.append`): no reader can guard
# against that, only refusing such items before applying them can. Strings in lists keep to ASCII.
ASCII = st.characters(max_codepoint=0x7F)


@st.composite
def contents(draw: st.DrawFn, in_array: bool = False) -> tuple[str, Any]:
    """A content kind and a value for it (`in_array`: for an element of a Y.Array)."""
    kind = draw(st.sampled_from(CONTENT_KINDS))
    if kind == "any":
        return kind, draw(st.lists(any_values, min_size=1, max_size=3))
    if kind == "string":
        return kind, draw(st.text(ASCII if in_array else st.characters(), min_size=1, max_size=6))
    if kind in ("embed", "format", "json"):
        return kind, draw(any_values.filter(lambda v: not _has_bytes(v)).filter(_finite))
    if kind == "type":
        return kind, draw(st.sampled_from(sorted(TYPE_REFS)))
    if kind == "deleted":
        return kind, draw(st.integers(1, 3))
    return kind, None


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


damage = st.lists(
    st.one_of(
        st.tuples(
            st.just("entry"), st.sampled_from(MAP_TARGETS), st.sampled_from(KEYS), contents()
        ),
        st.tuples(st.just("element"), st.just("design"), st.none(), contents()),
        st.tuples(st.just("element"), st.sampled_from(ARRAY_TARGETS), st.none(), contents(True)),
        st.tuples(st.just("overwrite"), st.none(), st.none(), contents()),
        st.tuples(st.just("delete"), st.none(), st.integers(0, 20), st.none()),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage)
def test_no_reader_raises_anything_but_a_crdtdoc_error(ops: list[tuple[Any, ...]]) -> None:
    r, tid = team()
    full = r.encode_update()
    task = nested_type_id(full, tid, "backlog")
    parents = {
        "task": task,
        "claims": nested_type_id(full, "claims", task),
        "completions": nested_type_id(full, "completions", task),
    }
    lists = {"notes": nested_type_id(full, "notes", task)}
    evil = RawWriter(EVIL)
    last: tuple[int, int] | None = None
    for op, target, key, content in ops:
        if op == "delete":
            if evil.clock:
                apply_raw(r, evil.delete(EVIL, min(key, evil.clock - 1)))
            continue
        kind, value = content
        if op == "overwrite":
            if last is None:
                continue
            data = evil.entry("", kind, value, after=last)
        elif op == "entry" and target in parents:
            data = evil.entry(key, kind, value, parent=parents[target])
        elif op == "entry":
            data = evil.entry(key, kind, value, root=target)
        elif target in lists:
            data = evil.element(kind, value, parent=lists[target])
        else:
            data = evil.element(kind, value, root=target)
        apply_raw(r, data)
        if op in ("entry", "overwrite"):
            last = evil.last_id()
    read_all(r, tid)  # fails the test on anything but a CrdtdocError


HANGING_READ = """
import sys
from crdtdoc import Replica
from tests.support.yjs_items import RawWriter, apply_raw, nested_type_id
r = Replica(agent="reader")
tasks = r.tasks("backlog")
tid = tasks.add("task one")
tasks.note(tid, "first")
full = r.encode_update()
notes = nested_type_id(full, "notes", nested_type_id(full, tid, "backlog"))
apply_raw(r, RawWriter(424242).element("string", "\\u00e9", parent=notes))
print(len(tasks.list()[0].notes), flush=True)
"""


@pytest.mark.xfail(
    reason="pycrdt 0.14.13 loops forever reading (or appending to) a Y.Array past a string "
    "item that is not ASCII; only refusing such items before applying them (and when loading "
    "stored rooms) can prevent it, no reader can",
    strict=False,
)
def test_a_string_item_in_a_task_s_notes_does_not_hang_readers() -> None:
    """In a subprocess: a hang there fails this test instead of freezing the suite."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            [sys.executable, "-c", HANGING_READ], cwd=root, capture_output=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading the task list did not finish in 10 s")
    assert done.returncode == 0, done.stderr.decode()

"""Readers of every artifact and of the bookkeeping, over documents holding odd or damaged entries.

Each entry is hand-encoded and applied straight to the pycrdt Doc (past the replica's checks), as
data stored before any gate refused it would be. Every reader must answer, or raise only a
`CrdtdocError`; what it leaves out must be what a Yjs client would not show either, or clearly a
damaged entry; honest writes keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import crdtdoc
from crdtdoc import Replica
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT, DELETIONS_ROOT, NOTES_ROOT
from crdtdoc.textmodel import EMBED
from tests.support.yjs_items import (
    TYPE_REFS,
    RawWriter,
    apply_raw,
    entry_id,
    first_item,
    nested_type_id,
)

EVIL = 424242
# Values a stock client never writes where these entries go (JSON is applied as yrs reads it).
ODD: list[tuple[str, Any]] = [
    ("format", None),
    ("string", "hello"),
    ("embed", None),
    ("binary", None),
    ("json", None),
    ("deleted", None),
    ("doc", None),
    *[("type", name) for name in TYPE_REFS],
    ("any", [{"nested": b"\x00bytes"}]),
    ("any", [float("nan")]),
    ("any", [7]),
    ("any", [{"x": 1}]),
    ("any", [["a", 1]]),
    ("any", ["str"]),
]
KINDS = {"cfg": "map", "backlog": "tasks", "api": "spec", "design": "document"}
ODD_IDS = [f"{kind}-{value!r}"[:40] for kind, value in ODD]


def team() -> tuple[Replica, str]:
    """A replica with one artifact of each kind (and a claimed, noted, completed task)."""
    a = Replica(agent="alice", client_id=1)
    a.map("cfg").set("a", 1)
    tasks = a.tasks("backlog")
    tid = tasks.add("task one", labels=["x"])
    tasks.claim(tid)
    tasks.note(tid, "started")
    tasks.add("task two")
    a.spec("api").set("User.id", "UUID")
    a.document("design").insert(0, "hello world")
    r = Replica(agent="reader", client_id=2)
    r.apply_update(a.encode_update())
    return r, tid


def readers(r: Replica, tid: str) -> dict[str, Callable[[], Any]]:
    """Every public reader of the team's artifacts and of the bookkeeping."""
    return {
        "map.to_dict": lambda: r.map("cfg").to_dict(),
        "map.keys": lambda: r.map("cfg").keys(),
        "map.len": lambda: len(r.map("cfg")),
        "map.get": lambda: r.map("cfg").get("a"),
        "map.get_bad": lambda: r.map("cfg").get("bad", "default"),
        "map.contains": lambda: "bad" in r.map("cfg"),
        "map.repr": lambda: repr(r.map("cfg")),
        "tasks.list": lambda: r.tasks("backlog").list(),
        "tasks.ids": lambda: r.tasks("backlog").ids(),
        "tasks.ready": lambda: r.tasks("backlog").ready(),
        "tasks.get": lambda: r.tasks("backlog").get(tid),
        "tasks.len": lambda: len(r.tasks("backlog")),
        "tasks.contains": lambda: "tbad" in r.tasks("backlog"),
        "tasks.describe": lambda: [t.describe() for t in r.tasks("backlog").list()],
        "spec.members": lambda: r.spec("api").members(),
        "spec.get": lambda: r.spec("api").get("User.id"),
        "spec.values": lambda: r.spec("api").values("User.id"),
        "spec.conflicts": lambda: r.spec("api").conflicts(),
        "spec.to_dict": lambda: r.spec("api").to_dict(),
        "spec.frozen": lambda: r.spec("api").frozen,
        "spec.frozen_by": lambda: r.spec("api").frozen_by(),
        "spec.frozen_at": lambda: r.spec("api").frozen_at(),
        "spec.len": lambda: len(r.spec("api")),
        "document.read": lambda: r.document("design").read(),
        "document.lines": lambda: r.document("design").lines(),
        "artifacts": r.artifacts,
        "agents": r.agents,
        "changes_since": lambda: [c.describe() for c in r.changes_since(None)],
        "version": lambda: r.version().token(),
    }


def read_all(r: Replica, tid: str) -> dict[str, Any]:
    """Runs every reader: each answers, or raises only a CrdtdocError (recorded as such)."""
    out: dict[str, Any] = {}
    for name, reader in readers(r, tid).items():
        try:
            out[name] = reader()
        except crdtdoc.CrdtdocError as exc:
            out[name] = exc
        except BaseException as exc:  # the point: nothing else may escape
            pytest.fail(f"{name} raised {type(exc).__name__}: {exc}")
    return out


def assert_honest_writes_work(r: Replica, tid: str) -> None:
    """An honest agent can still write every artifact."""
    r.map("cfg").set("b", 2)
    assert r.map("cfg").get("b") == 2
    tasks = r.tasks("backlog")
    new = tasks.add("task three")
    tasks.claim(new)
    tasks.complete(new)
    assert tasks.get(new).status == "done"
    tasks.reopen(new)
    assert tasks.get(new).status == "open"
    r.spec("api").set("User.email", "str")
    assert r.spec("api").get("User.email") == "str"
    r.document("design").append("!")
    assert r.document("design").read().endswith("!")


@pytest.mark.parametrize(("kind", "value"), ODD, ids=ODD_IDS)
def test_an_odd_entry_in_each_map_leaves_every_reader_working(kind: str, value: Any) -> None:
    r, tid = team()
    evil = RawWriter(EVIL)
    for root, key in [
        ("cfg", "bad"),
        ("backlog", "tbad"),
        ("api", "m:bad"),
        (ARTIFACTS_ROOT, "evil"),
        (AGENTS_ROOT, str(EVIL)),
    ]:
        apply_raw(r, evil.entry(key, kind, value, root=root))
    seen = read_all(r, tid)
    for name in ("map.to_dict", "tasks.list", "spec.members", "artifacts", "agents"):
        assert not isinstance(seen[name], Exception), (name, seen[name])
    assert seen["map.get"] == 1
    assert seen["spec.get"] == "UUID"
    assert seen["spec.members"] == ["User.id"]  # a damaged entry is no member
    honest = [t.title for t in seen["tasks.list"] if t.id != "tbad"]
    assert honest == ["task one", "task two"]  # the honest tasks are all there
    is_task = kind == "type" and value == "Map"  # an empty task, but a task (a Y.Map)
    assert len(seen["tasks.list"]) == seen["tasks.len"] == 2 + is_task
    assert seen["artifacts"] == KINDS
    assert seen["agents"][1] == "alice"
    assert all(isinstance(k, int) and isinstance(v, str) for k, v in seen["agents"].items())
    shown = seen["map.to_dict"]
    assert shown["a"] == 1
    not_json = kind in ("format", "deleted", "binary", "doc", "type") or value in (
        [float("nan")],
        [{"nested": b"\x00bytes"}],
    )
    if not_json and not (kind == "type" and value in ("Map", "Array", "Text", "XmlHook")):
        assert "bad" not in shown  # not JSON, or not shown by Yjs either
    assert set(seen["map.keys"]) == set(shown) and seen["map.len"] == len(shown)
    assert seen["map.contains"] == ("bad" in shown)
    assert seen["map.get_bad"] == shown.get("bad", "default")
    assert_honest_writes_work(r, tid)
    read_all(r, tid)


@pytest.mark.parametrize(("kind", "value"), ODD, ids=ODD_IDS)
def test_an_odd_entry_inside_a_task_leaves_the_task_readable(kind: str, value: Any) -> None:
    r, tid = team()
    full = r.encode_update()
    task = nested_type_id(full, tid, "backlog")
    claims = nested_type_id(full, "claims", task)
    completions = nested_type_id(full, "completions", task)
    places = [
        (task, "title"),
        (task, "labels"),
        (task, "created_at"),
        (task, "notes"),
        (claims, "mallory"),
        (completions, "c0"),
    ]
    evil = RawWriter(EVIL)
    for parent, key in places:
        apply_raw(r, evil.entry(key, kind, value, parent=parent))
    seen = read_all(r, tid)
    got = seen["tasks.get"]
    assert not isinstance(got, Exception), got
    assert got.id == tid and isinstance(got.title, str)
    assert got.assignee in ("alice", "mallory")
    assert all(isinstance(x, str) for x in got.labels + got.claimants + got.completed_by)
    assert all(isinstance(n.at, float) for n in got.notes)
    assert_honest_writes_work(r, tid)
    r.tasks("backlog").note(tid, "still works")
    r.tasks("backlog").complete(tid)
    assert r.tasks("backlog").get(tid).status == "done"
    read_all(r, tid)


@pytest.mark.parametrize(("kind", "value"), ODD, ids=ODD_IDS)
def test_odd_items_in_the_text_and_the_logs_leave_readers_working(kind: str, value: Any) -> None:
    r, tid = team()
    design = r.document("design").read()
    evil = RawWriter(EVIL)
    first = first_item(r.encode_update(), "design")
    apply_raw(r, evil.element(kind, value, origin=first))  # after the text's first character
    for root in (DELETIONS_ROOT, NOTES_ROOT):
        apply_raw(r, evil.element(kind, value, root=root))
    seen = read_all(r, tid)
    text = seen["document.read"]
    assert isinstance(text, str)
    if kind in ("embed", "type"):  # one position, shown as U+FFFC
        assert text.count(EMBED) == 1 and text.replace(EMBED, "") == design
    elif kind != "string":
        assert text == design  # a format or a value shows no character
    assert_honest_writes_work(r, tid)
    read_all(r, tid)


def test_the_repro_format_item_in_each_map() -> None:
    """A Format item as a map entry: Yjs reads it as undefined and shows nothing for it."""
    r, _tid = team()
    evil = RawWriter(EVIL)
    for root, key in [("cfg", "fmt"), ("backlog", "t0000000000000000"), ("api", "User.name")]:
        apply_raw(r, evil.entry(key, "format", root=root))
    assert r.map("cfg").to_dict() == {"a": 1}
    assert r.map("cfg").keys() == ["a"] and len(r.map("cfg")) == 1
    assert [t.title for t in r.tasks("backlog").list()] == ["task one", "task two"]
    assert r.spec("api").members() == ["User.id"]
    assert r.spec("api").get("User.id") == "UUID"
    assert len(r.changes_since(None)) > 0


def test_a_format_item_over_a_registry_entry_hides_only_that_entry() -> None:
    r, _tid = team()
    full = r.encode_update()
    kind_entry = entry_id(full, "cfg", ARTIFACTS_ROOT)
    alice_entry = entry_id(full, "1", AGENTS_ROOT)
    evil = RawWriter(EVIL)
    apply_raw(r, evil.entry("cfg", "format", after=kind_entry))  # overwrites "map"
    apply_raw(r, evil.entry("1", "format", after=alice_entry))  # alice's name
    fresh = Replica(agent="late", client_id=3)
    fresh._doc.apply_update(r._doc.get_update())
    assert fresh.artifacts() == {"backlog": "tasks", "api": "spec", "design": "document"}
    assert fresh.agents() == {}  # alice's entry is all there was
    for change in fresh.changes_since(None):
        change.describe()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("²", "mallory"),  # str.isdigit, but int() refuses it
        ("007", "mallory"),  # not how a client id is written
        ("-5", "mallory"),
        (str(2**60), "mallory"),  # beyond a client id
        ("5", {"name": "mallory"}),  # an agents entry that is a dict
        ("6", 6),
        ("7", ""),
        ("8", ["mallory"]),
    ],
)
def test_odd_agents_entries_are_skipped(key: str, value: Any) -> None:
    r, tid = team()
    apply_raw(r, RawWriter(EVIL).entry(key, "any", [value], root=AGENTS_ROOT))
    seen = read_all(r, tid)
    assert seen["agents"] == {1: "alice"}
    assert not isinstance(seen["changes_since"], Exception)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("x", "spreadsheet"), ("y", 5), ("z", {"kind": "map"}), ("", "map"), (AGENTS_ROOT, "map")],
)
def test_odd_artifacts_entries_are_skipped(name: str, kind: Any) -> None:
    r, tid = team()
    apply_raw(r, RawWriter(EVIL).entry(name, "any", [kind], root=ARTIFACTS_ROOT))
    seen = read_all(r, tid)
    assert seen["artifacts"] == KINDS


@pytest.mark.parametrize(
    "task",
    [
        {"title": 5, "labels": "abc", "depends_on": 7, "notes": 3, "claims": [1], "created_at": ""},
        {"title": "t", "claims": {"a": {"at": "late"}, "b": {"at": 1.0}, "c": 5}},
        {"title": "t", "notes": [{"by": 1, "text": None, "at": "noon"}, 5, {"at": {"x": 1}}]},
        {"title": "t", "completions": {"x": 5}, "labels": [1, "ok", None]},
    ],
)
def test_tasks_with_wrong_value_types_read_sensibly(task: dict[str, Any]) -> None:
    """A task written by a careless client as plain values of the wrong types."""
    from pycrdt import Map

    r, tid = team()
    with r.transaction():
        r._doc.get("backlog", type=Map)["tweird"] = Map(task)
    seen = read_all(r, tid)
    weird = seen["tasks.list"][-1] if seen["tasks.list"][-1].id == "tweird" else None
    weird = weird or next(t for t in seen["tasks.list"] if t.id == "tweird")
    assert isinstance(weird.title, str)
    assert all(isinstance(x, str) for x in weird.labels + weird.depends_on + weird.claimants)
    assert all(isinstance(n.text, str) and isinstance(n.at, float) for n in weird.notes)
    r.tasks("backlog").note("tweird", "fine")
    r.tasks("backlog").reopen("tweird")


def test_a_task_entry_that_is_a_number_or_a_dict_is_no_task() -> None:
    r, _tid = team()
    evil = RawWriter(EVIL)
    apply_raw(r, evil.entry("tnum", "any", [5], root="backlog"))
    apply_raw(r, evil.entry("tdict", "any", [{"title": "x"}], root="backlog"))
    tasks = r.tasks("backlog")
    assert len(tasks.list()) == 2 and "tnum" not in tasks and "tdict" not in tasks
    with pytest.raises(crdtdoc.NotFound):
        tasks.get("tnum")
    with pytest.raises(crdtdoc.NotFound):
        tasks.claim("tdict")


def test_a_deleted_entry_is_gone_for_every_reader() -> None:
    r, _tid = team()
    evil = RawWriter(EVIL)
    apply_raw(r, evil.entry("gone", "any", ["x"], root="cfg"))
    assert r.map("cfg").get("gone") == "x"
    apply_raw(r, evil.delete(EVIL, 0))
    assert r.map("cfg").to_dict() == {"a": 1} and "gone" not in r.map("cfg")


def test_a_frozen_entry_of_the_wrong_shape() -> None:
    r, _tid = team()
    evil = RawWriter(EVIL)
    apply_raw(r, evil.entry("frozen", "any", [{"by": 5, "version": "bad token"}], root="api"))
    spec = r.spec("api")
    assert spec.frozen and spec.frozen_by() == "someone"
    with pytest.raises(crdtdoc.CrdtdocError):
        spec.frozen_at()
    with pytest.raises(crdtdoc.FrozenError):
        spec.set("User.x", 1)
    apply_raw(r, evil.entry("frozen", "format", after=evil.last_id()))
    assert not spec.frozen and spec.frozen_at() is None  # Yjs shows nothing there now


def test_the_change_feed_reports_odd_map_entries_as_readers_show_them() -> None:
    r, _ = team()
    since = r.version()
    evil = RawWriter(EVIL)
    apply_raw(r, evil.entry(str(EVIL), "any", ["mallory"], root=AGENTS_ROOT))
    apply_raw(r, evil.entry("²", "any", ["eve"], root=AGENTS_ROOT))
    apply_raw(r, evil.entry("str", "string", "hello", root="cfg"))
    apply_raw(r, evil.entry("fmt", "format", root="cfg"))
    changes = r.changes_since(since)
    shown = [(c.kind, c.artifact, c.key, c.value, c.agent) for c in changes]
    assert ("set", "cfg", "str", "hello", "mallory") in shown  # a map value, not text
    assert not any(c.key == "fmt" for c in changes)  # Yjs shows nothing there
    assert not any(c.text for c in changes)
    assert r.map("cfg").get("str") == "hello"

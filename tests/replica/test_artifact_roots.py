"""`crdtdoc.replica.artifact_roots`: which root is which artifact. A root is one kind only (as
declared here, as recorded in the document, as other Yjs clients use it); a kind is recorded in
the document only when a write completes; names are checked."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest
from pycrdt import Array, Map, Text

from crdtdoc import Replica, UsageError, WrongKind
from crdtdoc.roots import ARTIFACTS_ROOT


def _registry(r: Replica) -> dict[str, object]:
    return dict(r._doc.get(ARTIFACTS_ROOT, type=Map))


def _from_stock_client(write: str) -> bytes:
    """An update of a plain Yjs client that used root "d" as a Y.Array or a Y.XmlFragment."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if write == "array":
        doc.get("d", type=pycrdt.Array).append(1)
    else:
        doc.get("d", type=pycrdt.XmlFragment).children.append(pycrdt.XmlText("hi"))
    return doc.get_update()


def test_a_kind_recorded_by_another_replica_is_kept_even_for_the_same_root_type() -> None:
    a = Replica("a")
    a.map("x").set("k", 1)
    b = Replica("b")
    b.apply_update(a.encode_update())
    with pytest.raises(WrongKind, match="'x' is a map; it cannot also be used as a task list"):
        b.declare_artifact("x", "tasks", Map)  # a Y.Map too, but recorded as a map
    with pytest.raises(WrongKind, match="is a map; it cannot also be used as a document"):
        b.declare_artifact("x", "document", Text)
    b.declare_artifact("x", "map", Map)  # its own kind: fine


@pytest.mark.parametrize(("use", "named"), [("array", "Y.Array"), ("xml", "Y.XmlFragment")])
def test_a_root_other_clients_use_as_another_type_is_refused_and_left_alone(
    use: str, named: str
) -> None:
    r = Replica("r")
    r.apply_update(_from_stock_client(use))
    before = r.version()
    with pytest.raises(WrongKind, match=f"used by other clients as a {named}.*another name"):
        r.declare_artifact("d", "document", Text)
    assert r.version() == before and "d" not in r.artifacts()


def test_content_of_another_type_arriving_after_opening_stops_the_next_write() -> None:
    r = Replica("r")
    doc = r.document("d")  # opened while the root is empty
    r.apply_update(_from_stock_client("array"))
    before = r.version()
    with pytest.raises(WrongKind, match=r"Y\.Array"):
        doc.insert(0, "x")
    assert r.version() == before  # nothing written into the array


def test_record_write_records_the_kind_only_when_the_write_completes() -> None:
    r = Replica("r")
    r.declare_artifact("n", "document", Text)
    with pytest.raises(RuntimeError), r.transaction():
        r.record_write("n")
        raise RuntimeError("the write failed before changing anything")
    assert "n" not in _registry(r) and "n" not in r.artifacts()
    assert not r._kinds_to_record  # forgotten, not written by the next transaction
    with r.transaction():
        r.record_write("n")
        assert "n" not in _registry(r)  # not yet: at the end of the write
        r.artifact_root("n", Text).insert(0, "hi")
    assert _registry(r)["n"] == "document" and r.artifacts() == {"n": "document"}
    generation = r.generation
    with r.transaction():
        r.record_write("n")  # recorded once per replica: nothing more to write
    assert r.generation == generation


def test_artifacts_lists_a_name_opened_here_once_its_root_holds_something() -> None:
    stock: pycrdt.Doc[Any] = pycrdt.Doc()
    stock.get("yt", type=pycrdt.Text).insert(0, "from a Yjs editor")
    r = Replica("r")
    r.apply_update(stock.get_update())
    assert r.artifacts() == {}  # unrecorded, not opened: unknown
    r.document("yt")
    r.document("empty")
    assert r.artifacts() == {"yt": "document"}  # "empty" holds nothing: no artifact
    assert "yt" not in _registry(r)  # opening writes nothing


def test_names_and_root_types_are_checked() -> None:
    r = Replica("r")
    for bad, message in [("", "non-empty str"), (7, "non-empty str"), (ARTIFACTS_ROOT, "reserved")]:
        with pytest.raises(UsageError, match=message):
            r.declare_artifact(bad, "document", Text)  # type: ignore[arg-type]
    r.artifact_root("a", Array)
    with pytest.raises(UsageError, match="'a' is a Array; it cannot also be used as a Text"):
        r.artifact_root("a", Text)
    assert not r.in_transaction
    with r.transaction():
        assert r.in_transaction
    assert not r.in_transaction

"""Roots other clients use as another Yjs type (issue 17, item 3): opening one as an artifact of
another kind raises `WrongKind` naming both, and nothing is written into it (`document()` on a
ProseMirror Y.XmlFragment once read '' and inserted a raw string, breaking the editor)."""

from __future__ import annotations

from collections.abc import Callable

import pycrdt
import pytest

from crdtdoc import Replica, WrongKind


def _xml(doc: pycrdt.Doc) -> None:
    fragment = doc.get("d", type=pycrdt.XmlFragment)
    fragment.children.append(pycrdt.XmlElement("p", {}, [pycrdt.XmlText("hi")]))


def _map(doc: pycrdt.Doc) -> None:
    doc.get("d", type=pycrdt.Map)["k"] = "v"


def _array(doc: pycrdt.Doc) -> None:
    doc.get("d", type=pycrdt.Array).append({"a": 1})


def _text(doc: pycrdt.Doc) -> None:
    doc.get("d", type=pycrdt.Text).insert(0, "hello")


STOCK: dict[str, tuple[Callable[[pycrdt.Doc], None], str]] = {
    "xml fragment": (_xml, "Y.XmlFragment"),
    "map": (_map, "Y.Map"),
    "array": (_array, "Y.Array"),
    "text": (_text, "Y.Text"),
}
OPENS = {"document": "Text", "map": "Map", "tasks": "Map", "spec": "Map"}


@pytest.mark.parametrize("written", sorted(STOCK))
@pytest.mark.parametrize("opened", sorted(OPENS))
def test_a_root_of_another_kind_is_refused_and_left_alone(written: str, opened: str) -> None:
    write, kind = STOCK[written]
    stock = pycrdt.Doc()
    write(stock)
    replica = Replica("agent")
    replica.apply_update(stock.get_update())
    before = replica.version()
    # Same Yjs type: opened (a stock Y.Map read as a task list shows only what fits the layout)
    fits = STOCK[written][1] == f"Y.{OPENS[opened]}"
    if fits:
        getattr(replica, opened)("d")
        return
    with pytest.raises(WrongKind, match=f"used by other clients as a {kind}") as refused:
        getattr(replica, opened)("d")
    assert f"Y.{OPENS[opened]}" in str(refused.value)
    assert replica.version() == before  # nothing written


def test_roots_crdtdoc_agents_wrote_open_without_building_an_index() -> None:
    writer = Replica("w")
    writer.document("d").insert(0, "hello")
    reader = Replica("r")
    reader.apply_update(writer.encode_update(), trusted=True)
    assert reader.document("d").read() == "hello"
    assert reader._items is None  # its kind is recorded: no walk over the document needed


@pytest.mark.parametrize("trusted", [True, False], ids=["from a hub", "from a peer"])
@pytest.mark.parametrize("written", ["xml fragment", "array"])
def test_an_artifact_opened_early_refuses_once_others_use_its_root_as_another_kind(
    written: str, trusted: bool
) -> None:
    """Opened while the root was empty, then a ProseMirror page (or a Y.Array user) writes it:
    the next read or write through the opened handle raises, and nothing is written."""
    replica = Replica("agent")
    doc = replica.document("d")
    sent: list[bytes] = []
    replica.on_update(lambda update, local: sent.append(update) if local else None)
    stock = pycrdt.Doc()
    STOCK[written][0](stock)
    replica.apply_update(stock.get_update(), trusted=trusted)
    kind = STOCK[written][1]
    with pytest.raises(WrongKind, match=f"used by other clients as a {kind}"):
        doc.insert(0, "X")
    with pytest.raises(WrongKind, match=f"used by other clients as a {kind}"):
        doc.read()
    assert sent == []


def test_a_registry_entry_does_not_make_a_foreign_root_a_document() -> None:
    """Someone recorded "d" as a document, but its root holds a Y.XmlFragment's elements."""
    stock = pycrdt.Doc()
    _xml(stock)
    stock.get("__crdtdoc_artifacts", type=pycrdt.Map)["d"] = "document"
    replica = Replica("agent")
    replica.apply_update(stock.get_update())
    with pytest.raises(WrongKind, match=r"Y\.XmlFragment"):
        replica.document("d")


def test_an_array_of_maps_is_not_a_text() -> None:
    """A Y.Array holding only nested Y.Maps (a common app shape) has no text: refused."""
    stock = pycrdt.Doc()
    stock.get("d", type=pycrdt.Array).append(pycrdt.Map({"title": "a"}))
    for trusted in (True, False):
        replica = Replica("agent")
        replica.apply_update(stock.get_update(), trusted=trusted)
        with pytest.raises(WrongKind, match="nested types"):
            replica.document("d").insert(0, "x")


def test_a_write_after_others_made_an_empty_text_a_map_is_refused() -> None:
    """Opened while empty; a Y.Map app then uses the root (arriving from a hub, so unjudged
    here): the text still reads empty, and the write is refused."""
    replica = Replica("agent")
    doc = replica.document("d")
    stock = pycrdt.Doc()
    _map(stock)
    replica.apply_update(stock.get_update(), trusted=True)
    assert replica._items is None  # nothing built the index yet
    with pytest.raises(WrongKind, match=r"Y\.Map"):
        doc.insert(0, "hello")


def test_a_text_cleared_beside_an_embedded_type_stays_a_document() -> None:
    """Someone deletes all of a document's characters and embeds a Y.Map: the index built from
    that state sees nested types alone, but the document records a text there, so agents keep
    reading and writing it (refusing would lock every agent out for good)."""
    writer = Replica("alice")
    writer.document("design").insert(0, "Design notes")
    stock = pycrdt.Doc()
    stock.apply_update(writer.encode_update())
    text = stock.get("design", type=pycrdt.Text)
    del text[0 : len("Design notes")]
    text.insert_embed(0, pycrdt.Map({"k": "v"}))
    reader = Replica("carol")
    reader.apply_update(stock.get_update(), trusted=True)
    doc = reader.document("design")
    doc.insert(1, "again")
    assert doc.read() == "\ufffcagain"

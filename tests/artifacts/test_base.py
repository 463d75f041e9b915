"""`crdtdoc.artifacts.base`: what every artifact does with its host. It declares itself once
when made, fetches its root afresh on every use (a rebuild replaces the document), and writes in
one host transaction that calls `record_write` before handing out the root; a real `Replica` is
such a host."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pycrdt import Doc, Text

from crdtdoc import Replica
from crdtdoc.artifacts.base import Artifact, ArtifactHost
from crdtdoc.versions import Version


class Notes(Artifact[Text]):
    artifact = "document"
    root_type = Text


class FakeHost:
    """An `ArtifactHost` that records every call made to it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.generation = 0
        self.doc: Doc[Any] = Doc()
        self._depth = 0

    @property
    def agent(self) -> str:
        return "fake"

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
    ) -> Iterator[None]:
        self.calls.append(("begin",))
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.calls.append(("end",))

    def version(self) -> Version:
        return Version()

    def declare_artifact(self, name: str, artifact: str, kind: type[Any]) -> None:
        self.calls.append(("declare", name, artifact, kind.__name__))

    def artifact_root(self, name: str, kind: type[Any]) -> Any:
        self.calls.append(("root", name))
        return self.doc.get(name, type=kind)

    def record_write(self, name: str) -> None:
        self.calls.append(("record_write", name, str(self.in_transaction)))

    def check_artifact_root(self, name: str, build: bool = False) -> None:
        self.calls.append(("check", name))


def test_an_artifact_declares_itself_once_and_knows_its_name() -> None:
    host = FakeHost()
    notes = Notes(host, "n")
    assert notes.name == "n"
    assert host.calls == [("declare", "n", "document", "Text")]


def test_the_root_is_fetched_afresh_each_time() -> None:
    host = FakeHost()
    notes = Notes(host, "n")
    first = notes._root()
    host.doc = Doc()  # what a rebuild does: a new document
    assert notes._root() is not first and notes._root().doc is host.doc
    assert host.calls[1:] == [("root", "n")] * 3


def test_a_write_records_its_kind_inside_the_transaction_before_touching_the_root() -> None:
    host = FakeHost()
    notes = Notes(host, "n")
    with notes._writing() as root:
        root.insert(0, "hi")
    assert host.calls[1:] == [("begin",), ("record_write", "n", "True"), ("root", "n"), ("end",)]
    assert str(host.doc.get("n", type=Text)) == "hi"
    host.calls.clear()
    with pytest.raises(RuntimeError), notes._writing():
        raise RuntimeError("failed mid-write")
    assert host.calls[0] == ("begin",) and host.calls[-1] == ("end",)


def test_a_replica_is_an_artifact_host() -> None:
    replica = Replica("alice")
    host: ArtifactHost = replica
    notes = Notes(host, "n")
    with notes._writing() as root:
        root.insert(0, "written through the base class")
    assert replica.document("n").read() == "written through the base class"
    assert replica.artifacts() == {"n": "document"}

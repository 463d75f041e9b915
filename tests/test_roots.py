"""The bookkeeping roots (`crdtdoc.roots`): what a replica writes under them, of which type, and
that no reader takes them for artifacts."""

from __future__ import annotations

import pycrdt

from crdtdoc import Replica
from crdtdoc.roots import (
    AGENTS_ROOT,
    ARTIFACTS_ROOT,
    BOOKKEEPING_ARRAYS,
    BOOKKEEPING_MAPS,
    DELETIONS_ROOT,
    INTERNAL_ROOTS,
    NOTES_ROOT,
)


def test_every_internal_root_is_a_map_or_an_array_never_both() -> None:
    assert BOOKKEEPING_MAPS | BOOKKEEPING_ARRAYS == INTERNAL_ROOTS
    assert not BOOKKEEPING_MAPS & BOOKKEEPING_ARRAYS


def test_a_replica_writes_its_bookkeeping_under_these_roots_with_these_types() -> None:
    r = Replica("alice")
    r.document("design").insert(0, "hello")
    r.document("design").delete(0, 1)
    with r.transaction(note="tidy up"):
        r.tasks("backlog").add("ship")
    doc = pycrdt.Doc()
    doc.apply_update(r.encode_update())
    agents = doc.get(AGENTS_ROOT, type=pycrdt.Map)
    assert dict(agents) == {str(r.client_id): "alice"}
    kinds = doc.get(ARTIFACTS_ROOT, type=pycrdt.Map)
    assert dict(kinds) == {"design": "document", "backlog": "tasks"}
    assert len(doc.get(DELETIONS_ROOT, type=pycrdt.Array)) >= 1
    (note,) = list(doc.get(NOTES_ROOT, type=pycrdt.Array))
    assert note["by"] == "alice" and note["note"] == "tidy up"


def test_no_internal_root_is_listed_as_an_artifact() -> None:
    r = Replica("alice")
    r.document("design").insert(0, "x")
    r.document("design").delete(0, 1)
    with r.transaction(note="n"):
        r.map("settings").set("k", 1)
    assert set(r.artifacts()) == {"design", "settings"}
    assert not INTERNAL_ROOTS & set(r.artifacts())

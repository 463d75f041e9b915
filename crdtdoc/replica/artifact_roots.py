"""`ArtifactRoots`: which root of the document is which artifact. Opens artifacts (`document`,
`tasks`, `spec`, `map`), checks that a root is used as one kind only (here, in the document's
registry, and by other Yjs clients: a ProseMirror Y.XmlFragment is never opened as a text), and
records each artifact's kind in the document on its first write. The `declare_artifact`,
`artifact_root`, `record_write`, `check_artifact_root` methods are the host interface the
artifacts use (`crdtdoc.artifacts.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from pycrdt import Array, Map, Text

from crdtdoc.errors import CrdtdocError, UsageError, WrongKind
from crdtdoc.itemindex import ItemIndex
from crdtdoc.replica.engine import EngineDocument
from crdtdoc.roots import ARTIFACTS_ROOT, INTERNAL_ROOTS
from crdtdoc.safe_read import entry as safe_entry
from crdtdoc.values import check_text

if TYPE_CHECKING:
    pass

_T = TypeVar("_T", Text, "Map[Any]", "Array[Any]")


KIND_LABELS = {"document": "document", "tasks": "task list", "spec": "spec", "map": "map"}
"""How messages name each kind of artifact."""


_FITS: dict[type, frozenset[str]] = {
    Text: frozenset({"text", "types"}),  # characters, embeds, formats, embedded types
    Map: frozenset({"map"}),
    Array: frozenset({"array", "types"}),
}
"""How an artifact's root type may already be used by other clients (`ItemIndex.uses`)."""


_OWN_USE = {Text: "text", Map: "map", Array: "array"}
"""The use that makes a root of that type: a root holding it is that type, and other uses in it
are damage the readers hide (stray items, written before the semantic gate refused them); a
root that others use without it is another type's (nested types alone: a Y.Array of Y.Maps)."""


_USE_NAMES = {
    "map": "a Y.Map (entries under keys)",
    "text": "a Y.Text",
    "array": "a Y.Array",
    "xml": "a Y.XmlFragment (XML elements, as ProseMirror writes)",
    "types": "a sequence of nested types",
}


def _check_name(name: object) -> None:
    """Refuses what cannot name an artifact (a root of the document)."""
    if not isinstance(name, str) or not name:
        raise UsageError("an artifact name must be a non-empty str")
    check_text(name, "the artifact name")
    if name in INTERNAL_ROOTS:
        raise UsageError(f"{name!r} is reserved for crdtdoc's own bookkeeping")


class ArtifactRoots(EngineDocument):
    """The artifacts of the document and their roots (see the module docstring)."""

    def artifacts(self) -> dict[str, str]:
        """Every artifact the document knows of: name -> kind ("document", "tasks", ...).
        Registry entries that are damaged (not a known kind, not a usable name, unreadable) are
        left out (`crdtdoc.safe_read`)."""
        from crdtdoc.safe_read import artifact_kinds

        self._sync_point()
        kinds = artifact_kinds(self._doc.get(ARTIFACTS_ROOT, type=Map))
        for name, kind in self._artifact_kinds.items():  # opened here: known once it holds
            if name not in kinds and self._holds_content(name):  # something (a Yjs editor's)
                kinds[name] = kind
        return kinds

    def _holds_content(self, name: str) -> bool:
        """Whether the root of an artifact opened here holds anything (a name only opened, or
        mistyped in a write that failed, is no artifact)."""
        kind = self._root_kinds.get(name)
        if kind is None:
            return False
        try:
            return len(self._doc.get(name, type=kind)) > 0
        except Exception:  # a root the engine cannot read as that type: it holds something
            return True

    @property
    def in_transaction(self) -> bool:
        """Whether a local transaction is open (its changes are not committed yet)."""
        return self._txn_depth > 0

    def declare_artifact(self, name: str, artifact: str, kind: type[_T]) -> None:
        """Checks that `name` can be used as an artifact of this kind (locally and by what the
        document records), and declares its root type."""
        _check_name(name)
        recorded = self._doc.get(ARTIFACTS_ROOT, type=Map).get(name)
        known = self._artifact_kinds.get(name, recorded if isinstance(recorded, str) else None)
        if known is not None and known != artifact:
            raise WrongKind(
                f"artifact {name!r} is a {KIND_LABELS.get(known, known)}; it cannot also be "
                f"used as a {KIND_LABELS.get(artifact, artifact)}"
            )
        self._sync_point()
        # Unrecorded: written by non-crdtdoc clients, worth an index. Recorded: checked against
        # an index that exists (a Document checks its content again as it reads).
        if (known is None or self._items is not None) and name in list(self._doc.keys()):
            self._check_use(name, kind, artifact, self._item_index())
        self.artifact_root(name, kind)
        self._artifact_kinds[name] = artifact

    def _check_use(self, name: str, kind: type[_T], artifact: str, items: ItemIndex) -> None:
        """Raises `WrongKind` when other clients use root `name` as another Yjs type (a
        ProseMirror Y.XmlFragment opened as a document). Checked when an artifact opens and
        before each write, since such content may arrive after the artifact opened empty."""
        uses = items.uses(name)
        if not uses or _OWN_USE[kind] in uses:
            return
        foreign = uses - _FITS[kind]
        if not foreign:
            # Nested types alone: a Y.Array of Y.Maps, or a text whose characters were all
            # deleted beside an embedded type (the index no longer sees them): a text only if
            # the document records it as this artifact.
            if safe_entry(self._doc.get(ARTIFACTS_ROOT, type=Map), name) == artifact:
                return
            foreign = uses
        used = ", ".join(_USE_NAMES[use] for use in sorted(foreign))
        raise WrongKind(
            f"root {name!r} is used by other clients as {used}; crdtdoc opens it only "
            f"as a Y.{kind.__name__} ({artifact}) and never writes into a root of "
            "another kind: give this artifact another name"
        )

    def check_artifact_root(self, name: str, build: bool = False) -> None:
        """Raises `WrongKind` if an opened artifact's root has since been used by others as
        another Yjs type, as far as the item index knows; `build`: build the index if items
        from others arrived without it (costly once, then every local commit pays a parse:
        before a write, or when a text's content suggests it)."""
        if self._items is not None or (build and self._unindexed):
            try:
                items = self._item_index()
            except CrdtdocError:  # content our parser refuses, applied trusted: unknown
                self._unindexed = False  # not tried again until more arrives
                return
            self._check_use(name, self._root_kinds[name], self._artifact_kinds[name], items)

    def record_write(self, name: str) -> None:
        """Inside a write, before it changes anything: checks that the root is still of the
        artifact's kind, and has that kind recorded in the document (once per replica) when
        the write completes: a write that fails (a mistyped name, text not found) leaves no
        artifact behind."""
        self.check_artifact_root(name, build=True)
        if name not in self._recorded_kinds:
            self._kinds_to_record.add(name)

    def _write_kinds(self) -> None:
        """Records the kinds of the artifacts the completing write changed (see above)."""
        registry = self._doc.get(ARTIFACTS_ROOT, type=Map)
        for name in sorted(self._kinds_to_record):
            if registry.get(name) != self._artifact_kinds[name]:
                registry[name] = self._artifact_kinds[name]
            self._recorded_kinds.add(name)
        self._kinds_to_record.clear()

    def artifact_root(self, name: str, kind: type[_T]) -> _T:
        """The root type `name` of the current document (refetched: a rebuild replaces the doc)."""
        _check_name(name)
        self._sync_point()
        declared = self._root_kinds.setdefault(name, kind)
        if declared is not kind:
            # pycrdt would silently hand out a second view of another type on the same root.
            raise UsageError(
                f"artifact {name!r} is a {declared.__name__}; it cannot also be used as a "
                f"{kind.__name__}"
            )
        return self._engine_root(name, kind)

    def _engine_root(self, name: str, kind: type[_T]) -> _T:
        """The root type `name` of the current document, fetched once per document: pycrdt's
        `get` costs a transaction of its own (no checks, no sync point: see `_root`)."""
        root = self._roots.get(name)
        if root is None:
            root = self._roots[name] = self._doc.get(name, type=kind)
        return cast(_T, root)

"""`Document`: a shared text (Yjs root Y.Text) addressed by Python `str` indices.

The text reads with each embed as U+FFFC and every index counts code points of what `read()`
shows (crdtdoc.textmodel), so an edit lands where a Yjs client making it at the same place would.
pycrdt addresses text by UTF-8 byte, and an offset inside a multibyte character corrupts the edit
(it may append at the end or delete the whole text); `TextView.offset` converts on a boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast
from weakref import WeakKeyDictionary

from pycrdt import Text

from crdtdoc import safe_read, textdiff, textmodel
from crdtdoc.artifacts.base import Artifact, ArtifactHost
from crdtdoc.errors import (
    AmbiguousText,
    InvalidIndex,
    InvalidValue,
    NotFound,
    ReplicaError,
    UsageError,
)
from crdtdoc.textmodel import TextView

if TYPE_CHECKING:
    from crdtdoc.blame import BlameSource, BlameSpan
    from crdtdoc.versions import Version

    class BlameHost(BlameSource, Protocol):
        """A replica as blame reads it, and its past (`crdtdoc.Replica` is one)."""

        def at(self, version: Version | str) -> BlameHost: ...

        def document(self, name: str) -> Document: ...


from crdtdoc.values import JSONValue, check_text, to_yjs

_VIEWS: WeakKeyDictionary[ArtifactHost, dict[str, tuple[int, TextView]]] = WeakKeyDictionary()
"""replica -> root -> (generation, the text then): a document's text is kept between edits
instead of read whole each time, for as long as its replica lives."""


class Document(Artifact[Text]):
    """A shared text. Edits apply locally at once and merge with everyone else's."""

    __slots__ = ()
    artifact = "document"
    root_type = Text

    def __init__(self, replica: ArtifactHost, name: str) -> None:
        super().__init__(replica, name)  # checks the root is (or can be) a text
        self._view()  # checks what it holds, if the document did not say what the root is

    def _view(self) -> TextView:
        """The text as read() shows it, with where its embeds are (cached per generation)."""
        shared = self._root()  # first: a sync point may apply updates that arrived
        replica = self._replica
        views = _VIEWS.setdefault(replica, {})
        cached = views.get(self._name)
        if cached is not None and cached[0] == replica.generation and not replica.in_transaction:
            return cached[1]
        view = safe_read.text_view(shared)
        # Content that is not characters may be another type's (a ProseMirror fragment's
        # elements): worth building the item index to know.
        replica.check_artifact_root(self._name, build=not view.plain)
        if not replica.in_transaction:
            views[self._name] = (replica.generation, view)
        return view

    def read(self) -> str:
        """The current text; each embed (an image, an embedded object) shows as U+FFFC, one
        position, and formatting shows nothing."""
        return self._view().text

    def delta(self) -> list[dict[str, JSONValue]]:
        """The text as Quill-style delta operations, as Yjs `toDelta` gives them: each
        `{"insert": text or an embed's JSON value}`, with `"attributes"` when formatted."""
        self._view()  # checks the root is still a text
        return safe_read.text_delta(self._root())

    def _remember(self, before: int, commits: int, view: TextView) -> None:
        """After an edit of ours: `view` is the text now if exactly `commits` commits happened
        since generation `before` (a listener editing meanwhile, or an enclosing transaction,
        and the text is read afresh next time)."""
        replica = self._replica
        if not replica.in_transaction and replica.generation == before + commits:
            _VIEWS.setdefault(replica, {})[self._name] = (replica.generation, view)

    def __str__(self) -> str:
        return self.read()

    def __len__(self) -> int:
        return len(self.read())

    def __repr__(self) -> str:
        return f"Document({self._name!r}, {len(self)} characters)"

    def insert(self, index: int, text: str, attributes: dict[str, JSONValue] | None = None) -> None:
        """Inserts `text` before position `index` of read() (0 <= index <= len). Like a Yjs
        insert, it takes the formatting of the text before it, unless `attributes` gives its
        formatting (`{}`: none; `{"bold": True}`; a key set to None is not formatted so)."""
        if not isinstance(text, str):
            raise UsageError(f"insert takes a str, not {type(text).__name__}")
        check_text(text, "the inserted text")
        textmodel.check_insertable(text, "the inserted text")
        formats = None if attributes is None else _formats(attributes)
        current = self._view()
        _check_index(index, len(current.text), "insert index")
        if not text:
            return
        before = self._replica.generation
        self._apply(current, [textdiff.Edit(index, 0, text)], formats)
        self._remember(before, 1, current.inserted(index, text))

    def append(self, text: str) -> None:
        """Inserts `text` at the end."""
        self.insert(len(self.read()), text)

    def delete(self, index: int, length: int = 1) -> None:
        """Deletes `length` positions of read() starting at `index` (an embed in the span, shown
        as U+FFFC, is deleted with it)."""
        current = self._view()
        size = len(current.text)
        _check_index(index, size, "delete index")
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise InvalidIndex(f"delete length must be a non-negative int, got {length!r}")
        if index + length > size:
            raise InvalidIndex(f"cannot delete {length} characters at {index}: the text has {size}")
        if not length:
            return
        before = self._replica.generation
        self._apply(current, [textdiff.Edit(index, length, "")])
        # Two commits: the deletion, then its record in the deletions log.
        self._remember(before, 2, current.deleted(index, length))

    def write(self, new_text: str, base: str | None = None) -> None:
        """Makes the text read `new_text` through the fewest, most readable edits.

        Unchanged stretches keep their identity, formatting and embeds, so concurrent edits by
        others land where they belong instead of being wiped by a wholesale replace. Keep each
        U+FFFC where read() showed it to keep that embed; remove it to delete the embed.

        `base`: the text this write was made from (what `read()` returned). Pass it when others
        may have edited since: their changes are kept, and `StaleRead` is raised, changing
        nothing, when they touched a stretch this write changes. Without it the text is made to
        read exactly `new_text`, undoing whatever others changed since you read it.
        """
        if not isinstance(new_text, str):
            raise UsageError(f"write takes a str, not {type(new_text).__name__}")
        check_text(new_text, "the new text")
        if base is not None and not isinstance(base, str):
            raise UsageError(f"write's base is the str you read, not {type(base).__name__}")
        current = self._view()
        if base is None or base == current.text:
            edits = textmodel.plan(current.text, new_text, "the new text")
        else:
            mine = textmodel.plan(base, new_text, "the new text")
            edits = textmodel.rebase(mine, textdiff.diff(base, current.text), base)
        self._apply(current, edits)

    def _apply(
        self,
        current: TextView,
        edits: list[textdiff.Edit],
        formats: dict[str, JSONValue] | None = None,
    ) -> None:
        """Applies `edits` (positions of `current`) in one transaction, right to left so each
        edit's offset in the old text is still valid; inserted text formatted as `formats`
        says (None: as the text before it)."""
        if not edits:
            return
        if not current.exact and any(e.delete or e.index != len(current.text) for e in edits):
            raise ReplicaError(
                f"{self._name!r} holds content whose positions crdtdoc cannot tell (stored "
                "before such content was refused); it reads, and takes text appended at its "
                "end, but other edits are refused so none lands in the wrong place"
            )
        with self._writing() as text:
            # yrs, deleting next to an embedded type, may drop the format items around it and
            # so change its formatting (Yjs keeps them): noted first, put back after.
            kept = None if current.plain else safe_read.embed_formats(text)
            for edit in reversed(edits):
                start = current.offset(edit.index)
                if edit.delete:
                    del text[start : current.offset(edit.index + edit.delete)]
                if edit.insert:
                    text.insert(start, edit.insert, formats)
            if kept:
                _restore_formats(text, textmodel.moved(kept, edits))

    def apply_edits(self, edits: list[textdiff.Edit]) -> None:
        """Applies several edits at once, in one transaction: each `Edit(index, delete,
        insert)` in positions of the current `read()`, sorted by index and not overlapping."""
        current = self._view()
        size, end = len(current.text), 0
        for edit in edits:
            if not isinstance(edit, textdiff.Edit):
                raise UsageError(f"apply_edits takes textdiff.Edit values, not {edit!r}")
            check_text(edit.insert, "the inserted text")
            textmodel.check_insertable(edit.insert, "the inserted text")
            if edit.index < end or edit.delete < 0 or edit.index + edit.delete > size:
                raise InvalidIndex(f"edits must be sorted, apart and inside the text: {edit}")
            end = edit.index + edit.delete
        self._apply(current, edits)

    def blame(self, at: Version | str | None = None) -> list[BlameSpan]:
        """Who wrote each stretch of the text, in order: spans of `read()` (of the text at
        version `at`, when given: see `Replica.at`), each with its agent and the version after
        the step that wrote it. Runs of one step read as one span."""
        from crdtdoc.blame import blame_text

        host = cast("BlameHost", self._replica)
        source = host if at is None else host.at(at)
        return blame_text(source, self._name, source.document(self._name).read())

    def lines(self) -> list[str]:
        """The text's lines, without their line endings (as `str.splitlines`)."""
        return self.read().splitlines()

    def replace(self, old: str, new: str) -> None:
        """Replaces the one occurrence of `old` with `new` (a local edit: concurrent edits
        elsewhere in the text are kept). Raises `NotFound` when `old` is absent and
        `AmbiguousText` when it occurs more than once: add context to make it unique."""
        if not isinstance(old, str) or not isinstance(new, str):
            raise UsageError("replace takes two str: the text to find and its replacement")
        if not old:
            raise UsageError("replace needs a non-empty text to find")
        check_text(new, "the replacement")
        current = self._view()
        at = current.text.find(old)
        if at < 0:
            raise NotFound(f"{old!r} is not in {self._name!r}; read the document again")
        again = current.text.find(old, at + 1)
        if again >= 0:
            text = current.text
            line, other = text.count("\n", 0, at) + 1, text.count("\n", 0, again) + 1
            raise AmbiguousText(
                f"{old!r} occurs more than once in {self._name!r} (lines {line} and {other}); "
                "include surrounding text to say which"
            )
        edits = textmodel.plan(old, new, "the replacement")
        self._apply(current, [textdiff.Edit(at + e.index, e.delete, e.insert) for e in edits])


def _formats(attributes: object) -> dict[str, JSONValue]:
    """Formatting attributes as Yjs stores them, checked before anything changes."""
    if not isinstance(attributes, dict) or not all(isinstance(k, str) for k in attributes):
        raise InvalidValue(
            "attributes must be a dict of str keys to JSON values, e.g. {'bold': True}"
        )
    return cast(dict[str, JSONValue], to_yjs(cast(JSONValue, attributes)))


def _restore_formats(text: Text, wanted: dict[int, tuple[int, dict[str, Any]]]) -> None:
    """Formats each embed at position `wanted` keys as its value (from `embed_formats` before
    the edit) says, where it differs now."""
    for at, (offset, have) in safe_read.embed_formats(text).items():
        attributes = wanted[at][1] if at in wanted else have
        if have != attributes:
            fix = {key: None for key in have if key not in attributes}
            fix.update(attributes)
            text.format(offset, offset + 1, fix)


def _check_index(index: int, length: int, what: str) -> None:
    if not isinstance(index, int) or isinstance(index, bool):
        raise InvalidIndex(f"{what} must be an int, got {type(index).__name__}")
    if not 0 <= index <= length:
        raise InvalidIndex(f"{what} {index} is outside the text (0 to {length})")

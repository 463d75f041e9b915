"""`Document`: a shared text (Yjs root Y.Text) addressed by Python `str` indices.

pycrdt addresses text by UTF-8 byte offsets, and an offset inside a multibyte character corrupts the
edit (it may append at the end or delete the whole text). Every index here counts code points, as
`str` does, and is converted on a character boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pycrdt import Text

from crdtdoc import safe_read, textdiff
from crdtdoc.errors import AmbiguousText, CrdtdocError, InvalidIndex, NotFound
from crdtdoc.values import check_text

if TYPE_CHECKING:
    from crdtdoc.replica import Replica


def _byte_offset(text: str, index: int) -> int:
    return index if text.isascii() else len(text[:index].encode("utf-8"))


class Document:
    """A shared text. Edits apply locally at once and merge with everyone else's."""

    __slots__ = ("_name", "_replica")

    def __init__(self, replica: Replica, name: str) -> None:
        self._replica = replica
        self._name = name
        replica._declare(name, "document", Text)  # checks the root is (or can be) a text

    @property
    def name(self) -> str:
        return self._name

    def _text(self) -> Text:
        return self._replica._root(self._name, Text)

    @contextmanager
    def _editing(self) -> Iterator[Text]:
        """A local transaction on the text (recording the artifact's kind on first write)."""
        with self._replica.transaction():
            self._replica._record_kind(self._name)
            yield self._text()

    def read(self) -> str:
        """The current text."""
        shared = self._text()  # first: a sync point may apply updates that arrived
        replica = self._replica
        cached = replica._texts.get(self._name)
        if cached is not None and cached[0] == replica.generation and not replica._txn_depth:
            return cached[1]
        text = safe_read.text_of(shared)  # embeds and formatting show no character, as in Yjs
        if not replica._txn_depth:
            replica._texts[self._name] = (replica.generation, text)
        return text

    def _remember(self, before: int, commits: int, text: str) -> None:
        """After an edit of ours: `text` is the text now if exactly `commits` commits happened
        since generation `before` (a listener editing meanwhile, or an enclosing transaction,
        and the text is read afresh next time)."""
        replica = self._replica
        if not replica._txn_depth and replica.generation == before + commits:
            replica._texts[self._name] = (replica.generation, text)

    def __str__(self) -> str:
        return self.read()

    def __len__(self) -> int:
        return len(self.read())

    def __repr__(self) -> str:
        return f"Document({self._name!r}, {len(self)} characters)"

    def insert(self, index: int, text: str) -> None:
        """Inserts `text` before character `index` (0 <= index <= len)."""
        if not isinstance(text, str):
            raise CrdtdocError(f"insert takes a str, not {type(text).__name__}")
        check_text(text, "the inserted text")
        current = self.read()
        _check_index(index, len(current), "insert index")
        if not text:
            return
        before = self._replica.generation
        with self._editing() as shared:
            shared.insert(_byte_offset(current, index), text)
        self._remember(before, 1, current[:index] + text + current[index:])

    def append(self, text: str) -> None:
        """Inserts `text` at the end."""
        self.insert(len(self.read()), text)

    def delete(self, index: int, length: int = 1) -> None:
        """Deletes `length` characters starting at character `index`."""
        current = self.read()
        _check_index(index, len(current), "delete index")
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise InvalidIndex(f"delete length must be a non-negative int, got {length!r}")
        if index + length > len(current):
            raise InvalidIndex(
                f"cannot delete {length} characters at {index}: the text has {len(current)}"
            )
        if not length:
            return
        start = _byte_offset(current, index)
        end = start + len(current[index : index + length].encode("utf-8"))
        before = self._replica.generation
        with self._editing() as shared:
            del shared[start:end]
        # Two commits: the deletion, then its record in the deletions log.
        self._remember(before, 2, current[:index] + current[index + length :])

    def write(self, new_text: str) -> None:
        """Makes the text equal `new_text` through the minimal inserts and deletes.

        Unchanged stretches keep their identity, so concurrent edits by others land where they
        belong instead of being wiped by a wholesale replace.
        """
        if not isinstance(new_text, str):
            raise CrdtdocError(f"write takes a str, not {type(new_text).__name__}")
        check_text(new_text, "the new text")
        current = self.read()
        edits = textdiff.diff(current, new_text)
        if not edits:
            return
        with self._editing() as text:
            ascii_text = current.isascii()
            # Right to left, so each edit's offset in the old text is still valid.
            for edit in reversed(edits):
                start = edit.index if ascii_text else len(current[: edit.index].encode("utf-8"))
                if edit.delete:
                    end = start + len(current[edit.index : edit.index + edit.delete].encode())
                    del text[start:end]
                if edit.insert:
                    text.insert(start, edit.insert)

    def lines(self) -> list[str]:
        """The text's lines, without their line endings (as `str.splitlines`)."""
        return self.read().splitlines()

    def replace(self, old: str, new: str) -> None:
        """Replaces the one occurrence of `old` with `new` (a local edit: concurrent edits
        elsewhere in the text are kept). Raises `NotFound` when `old` is absent and
        `AmbiguousText` when it occurs more than once: add context to make it unique."""
        if not isinstance(old, str) or not isinstance(new, str):
            raise CrdtdocError("replace takes two str: the text to find and its replacement")
        if not old:
            raise CrdtdocError("replace needs a non-empty text to find")
        check_text(new, "the replacement")
        current = self.read()
        at = current.find(old)
        if at < 0:
            raise NotFound(f"{old!r} is not in {self._name!r}; read the document again")
        again = current.find(old, at + 1)
        if again >= 0:
            line, other = current.count("\n", 0, at) + 1, current.count("\n", 0, again) + 1
            raise AmbiguousText(
                f"{old!r} occurs more than once in {self._name!r} (lines {line} and {other}); "
                "include surrounding text to say which"
            )
        prefix = _common_prefix(old, new)
        suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
        with self._editing() as text:
            start = _byte_offset(current, at + prefix)
            end = start + len(old[prefix : len(old) - suffix].encode("utf-8"))
            if end > start:
                del text[start:end]
            inserted = new[prefix : len(new) - suffix]
            if inserted:
                text.insert(start, inserted)


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _check_index(index: int, length: int, what: str) -> None:
    if not isinstance(index, int) or isinstance(index, bool):
        raise InvalidIndex(f"{what} must be an int, got {type(index).__name__}")
    if not 0 <= index <= length:
        raise InvalidIndex(f"{what} {index} is outside the text (0 to {length})")

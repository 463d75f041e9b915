"""`Document`: a shared text (Yjs root Y.Text) addressed by Python `str` indices.

pycrdt addresses text by UTF-8 byte offsets, and an offset inside a multibyte character corrupts the
edit (it may append at the end or delete the whole text). Every index here counts code points, as
`str` does, and is converted on a character boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycrdt import Text

from crdtdoc import textdiff
from crdtdoc.errors import CrdtdocError, InvalidIndex

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
        replica._root(name, Text)  # declares the root, and checks it is a text

    @property
    def name(self) -> str:
        return self._name

    def _text(self) -> Text:
        return self._replica._root(self._name, Text)

    def read(self) -> str:
        """The current text."""
        return str(self._text())

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
        current = self.read()
        _check_index(index, len(current), "insert index")
        if not text:
            return
        with self._replica.transaction():
            self._text().insert(_byte_offset(current, index), text)

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
        with self._replica.transaction():
            del self._text()[start:end]

    def write(self, new_text: str) -> None:
        """Makes the text equal `new_text` through the minimal inserts and deletes.

        Unchanged stretches keep their identity, so concurrent edits by others land where they
        belong instead of being wiped by a wholesale replace.
        """
        if not isinstance(new_text, str):
            raise CrdtdocError(f"write takes a str, not {type(new_text).__name__}")
        current = self.read()
        edits = textdiff.diff(current, new_text)
        if not edits:
            return
        with self._replica.transaction():
            text = self._text()
            ascii_text = current.isascii()
            # Right to left, so each edit's offset in the old text is still valid.
            for edit in reversed(edits):
                start = edit.index if ascii_text else len(current[: edit.index].encode("utf-8"))
                if edit.delete:
                    end = start + len(current[edit.index : edit.index + edit.delete].encode())
                    del text[start:end]
                if edit.insert:
                    text.insert(start, edit.insert)


def _check_index(index: int, length: int, what: str) -> None:
    if not isinstance(index, int) or isinstance(index, bool):
        raise InvalidIndex(f"{what} must be an int, got {type(index).__name__}")
    if not 0 <= index <= length:
        raise InvalidIndex(f"{what} {index} is outside the text (0 to {length})")

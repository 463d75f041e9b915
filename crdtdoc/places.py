"""`Place`: where an item of a document lives (its parent and map key) and what kind of content
it holds, and which content fits which kind of sequence. Places are what the item index keeps
per run of ids (`crdtdoc.itemindex`) and what the semantic gate judges (`crdtdoc.semantics`)."""

from __future__ import annotations

from typing import Final

from crdtdoc.contents import ANY, BINARY, DOC, EMBED, FORMAT, GC, STRING
from crdtdoc.updates import Id

Parent = str | Id | None
"""A root name, the id of the nested type holding the item, or None when garbage-collected."""

TEXT: Final = "text"
ARRAY: Final = "array"
MIXED: Final = "mixed"
"""A sequence that holds both kinds already (data stored before the gate): left unconstrained."""
SEQUENCE_FAMILY: Final = {
    STRING: TEXT,
    EMBED: TEXT,
    FORMAT: TEXT,
    ANY: ARRAY,
    BINARY: ARRAY,
    DOC: ARRAY,
}
"""The kind of sequence a content belongs to: Yjs writes strings, embeds and formats only into
texts, and any/binary/subdocument values only into arrays (types and deletions fit both)."""


class Place:
    """Where an item lives: its parent and, for a map entry, its key; `content` is its kind.
    Read-only by convention (written out, not a dataclass: see `crdtdoc.updates.Item`)."""

    __slots__ = ("content", "parent", "sub")

    def __init__(self, parent: Parent, sub: str | None, content: int) -> None:
        self.parent = parent
        self.sub = sub
        self.content = content

    @property
    def collected(self) -> bool:
        """Garbage-collected: Yjs and yrs both drop whatever is anchored here alone."""
        return self.parent is None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Place)
            and self.content == other.content
            and self.sub == other.sub
            and self.parent == other.parent
        )

    def __hash__(self) -> int:
        return hash((self.parent, self.sub, self.content))

    def __repr__(self) -> str:
        return f"Place({self.parent!r}, {self.sub!r}, {self.content})"


COLLECTED: Final = Place(None, None, GC)

"""Blame: for each stretch of a text, the agent who wrote it and the version that brought it.

Read off the document: each live character is part of a struct that carries its author's client
id, and the engine says where each struct stands in the text (a Yjs relative position per
struct). The version is the one after the history step that wrote the struct
(`crdtdoc.history`), which `Replica.at` shows. Runs of one agent's step read as one span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from crdtdoc.changes import utf16_range
from crdtdoc.contents import EMBED, STRING, TYPE
from crdtdoc.errors import ReplicaError
from crdtdoc.textmodel import EMBED as EMBED_CHAR

if TYPE_CHECKING:
    from crdtdoc.history import RoomHistory


class BlameSource(Protocol):
    """What blame reads of a replica (a `crdtdoc.Replica` is one)."""

    def room_history(self) -> RoomHistory: ...

    def agents(self) -> dict[int, str]: ...

    def text_offsets(self, name: str, ids: list[tuple[int, int]]) -> list[int]: ...


@dataclass(frozen=True)
class BlameSpan:
    """`text[start:end]` of the document (as `read()` shows it) and who wrote it, when."""

    start: int
    end: int
    text: str
    agent: str | None  # None: a client that named no agent (a stock Yjs editor)
    client_id: int
    version: str  # token of the version just after the step that wrote this span

    def describe(self) -> str:
        """One line: where, who, and the text (shortened)."""
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"{self.start}-{self.end} {self.agent or f'client {self.client_id}'}: {shown!r}"


def blame_text(source: BlameSource, name: str, text: str) -> list[BlameSpan]:
    """The spans of the text root `name` of `source`, whose `read()` is `text`, in order."""
    room = source.room_history()
    index, deleted = room.doc.index, room.deleted
    pieces: list[tuple[int, int, str, int | None]] = []  # (client, clock, text, step)
    for item in room.doc.items:
        if item.content not in (STRING, EMBED, TYPE):
            continue
        if index.root(item) != name or index.sub(item) is not None or index.path(item):
            continue
        for lo, hi in deleted.gaps(item.client, item.clock, item.clock + item.length):
            if item.content == STRING:
                shown = utf16_range(item.value, lo - item.clock, hi - item.clock)
            else:
                shown = EMBED_CHAR
            pieces.append((item.client, lo, shown, room.step_of(item.client, lo)))
    offsets = source.text_offsets(name, [(client, clock) for client, clock, _, _ in pieces])
    ordered = [piece for _, piece in sorted(zip(offsets, pieces, strict=True))]
    if "".join(piece[2] for piece in ordered) != text:
        raise ReplicaError(f"blame could not place every character of {name!r}")
    merged: list[tuple[int, str, int | None]] = []  # (client, text, step)
    for client, _, shown, step in ordered:
        if merged and merged[-1][0] == client and merged[-1][2] == step:
            merged[-1] = (client, merged[-1][1] + shown, step)
        else:
            merged.append((client, shown, step))
    versions = room.versions({step for _, _, step in merged if step is not None})
    names = source.agents()
    spans = []
    start = 0
    for client, shown, step in merged:
        version = versions[step].token() if step is not None else ""
        spans.append(
            BlameSpan(start, start + len(shown), shown, names.get(client), client, version)
        )
        start += len(shown)
    return spans

"""Blame: for each stretch of a text, the agent who wrote it and the version that brought it.

Read off the document: each live character is part of a struct that carries its author's client
id, and the engine says where each struct stands in the text (a Yjs relative position per
struct). The version is the one after the history step that wrote the struct
(`crdtdoc.history`), which `Replica.at` shows. Runs of one agent's step read as one span.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from crdtdoc.contents import EMBED, STRING, TYPE
from crdtdoc.errors import ReplicaError
from crdtdoc.structs import utf16_range
from crdtdoc.textmodel import EMBED as EMBED_CHAR
from crdtdoc.versions import Version

if TYPE_CHECKING:
    from crdtdoc.history import RoomHistory
    from crdtdoc.idset import IdSet
    from crdtdoc.structs import DocumentStructs
    from crdtdoc.updates import Item


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


Piece = tuple["Item", int, int]
"""A live stretch of a text: the struct, and the clocks `[lo, hi)` of it that are live."""


def text_items(doc: DocumentStructs, name: str) -> list[Item]:
    """The structs that take positions in the text root `name` (strings, embeds, embedded
    types written at its top level), deleted or not."""
    index = doc.index
    return [
        item
        for item in doc.items
        if item.content in (STRING, EMBED, TYPE)
        and index.root(item) == name
        and index.sub(item) is None
        and not index.path(item)
    ]


def ordered_pieces(
    items: list[Item], deleted: IdSet, offsets: Callable[[list[tuple[int, int]]], list[int]]
) -> list[Piece]:
    """The live stretches of `items` in text order (`offsets`: the engine's offset of each)."""
    pieces = [
        (item, lo, hi)
        for item in items
        for lo, hi in deleted.gaps(item.client, item.clock, item.clock + item.length)
    ]
    where = offsets([(item.client, lo) for item, lo, _ in pieces])
    return [piece for _, piece in sorted(zip(where, pieces, strict=True), key=lambda p: p[0])]


def shown(piece: Piece) -> str:
    """What `read()` shows of a piece: its characters, or U+FFFC for an embed."""
    item, lo, hi = piece
    if item.content == STRING:
        return utf16_range(item.value, lo - item.clock, hi - item.clock)
    return EMBED_CHAR


def blame_text(source: BlameSource, name: str, text: str) -> list[BlameSpan]:
    """The spans of the text root `name` of `source`, whose `read()` is `text`, in order."""
    room = source.room_history()
    offsets = functools.partial(source.text_offsets, name)
    ordered = ordered_pieces(text_items(room.doc, name), room.deleted, offsets)
    if "".join(shown(piece) for piece in ordered) != text:
        raise ReplicaError(f"blame could not place every character of {name!r}")
    merged: list[tuple[int, str, int | None]] = []  # (client, text, step)
    for piece in ordered:
        client = piece[0].client
        step = room.step_of(client, piece[1])
        if merged and merged[-1][0] == client and merged[-1][2] == step:
            merged[-1] = (client, merged[-1][1] + shown(piece), step)
        else:
            merged.append((client, shown(piece), step))
    versions = room.versions({step for _, _, step in merged if step is not None})
    names = source.agents()
    spans = []
    start = 0
    for client, written, step in merged:
        version = versions[step].token() if step is not None else ""
        spans.append(
            BlameSpan(start, start + len(written), written, names.get(client), client, version)
        )
        start += len(written)
    return spans


@dataclass(frozen=True)
class BlameLine:
    """One line of a text (1-based `number`, without its newline), the agents who wrote it in
    order of appearance, and the newest version among its spans'."""

    number: int
    agents: tuple[str, ...]
    version: str
    text: str


def blame_lines(spans: list[BlameSpan]) -> list[BlameLine]:
    """The spans of a text regrouped by line."""
    text = "".join(s.text for s in spans)
    out: list[BlameLine] = []
    start = at = 0
    for number, line in enumerate(text.split("\n"), 1):
        end = start + len(line) + 1  # the line and its newline
        agents: list[str] = []
        version = ""
        while at < len(spans) and spans[at].start < end:
            span = spans[at]
            who = span.agent or f"client {span.client_id}"
            if who not in agents:
                agents.append(who)
            version = max(version, span.version, key=_newest)
            if span.end > end:
                break  # the span goes on into the next line
            at += 1
        if line or start < len(text):
            out.append(BlameLine(number, tuple(agents), version, line))
        start = end
    return out


def by_line(spans: list[BlameSpan]) -> list[str]:
    """Each line as `agents | text`, the agents' column aligned: what the command line and the
    MCP server show."""
    lines = blame_lines(spans)
    width = max([len(", ".join(line.agents)) for line in lines] + [1])
    return [f"{', '.join(line.agents):<{width}} | {line.text}" for line in lines]


def _newest(token: str) -> tuple[int, int]:
    """Orders version tokens of one history: a later step's version holds more."""
    if not token:
        return (0, 0)
    version = Version.from_token(token)
    return (sum(version.clocks.values()), len(version.deleted))

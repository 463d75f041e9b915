"""What the engine answers about the past: a document as it was at a version, and where items
stand in a text.

A `Version` is a Yjs snapshot: a state vector and a delete set. The document as it was at one is
the structs the state vector covers, with the delete set: written here from the structs of a
document that still holds the content of everything live then. Only a document that keeps
history (no garbage collection, `Replica(history=True)`) holds the text of what was deleted
since, so the content is checked first. A struct the version cuts in two (one commit's text, typed
on by the next) is split by the engine first. yrs's own snapshot reading is not used: it panics
on a document that collects garbage, keeps a cut struct whole, and on some documents writes an
update it cannot read back (found by tests/test_history.py).
"""

from __future__ import annotations

import bisect
from typing import Any

from pycrdt import Doc, StickyIndex, Text

from crdtdoc.contents import ANY, BINARY, DELETED, EMBED, FORMAT, GC, JSON, SKIP, STRING
from crdtdoc.encoding import Encoder
from crdtdoc.errors import HistoryUnavailable
from crdtdoc.idset import IdSet
from crdtdoc.updates import Item, parse_update
from crdtdoc.versions import Version


def unheld(items: list[Item], version: Version) -> int:
    """How many ids live at `version` (written by then, not deleted by then) the document of
    `items` no longer holds the content of (kept as deleted or collected)."""
    clocks, deleted = version.clocks, version.deleted
    missing = 0
    for item in items:
        if item.content not in (DELETED, GC, SKIP):
            continue
        end = min(item.clock + item.length, clocks.get(item.client, 0))
        for lo, hi in deleted.gaps(item.client, item.clock, end) if item.clock < end else ():
            missing += hi - lo
    return missing


def _splitting(items: list[Item], version: Version) -> tuple[bytes, int] | None:
    """An update that makes the engine split every struct the version's clocks cut in two (and
    the client it writes as), or None if none is (`_split_after`)."""
    clocks = version.clocks
    cuts = [
        (item.client, clocks[item.client] - 1)
        for item in items
        if item.clock < clocks.get(item.client, 0) < item.clock + item.length
    ]
    return _split_after(items, cuts)


def _split_after(items: list[Item], cuts: list[tuple[int, int]]) -> tuple[bytes, int] | None:
    """An update that makes the engine split structs after each id of `cuts` (and the client
    it writes as), or None if there are none: one struct of a client no one has, written right
    after each of those ids."""
    if not cuts:
        return None
    used = {item.client for item in items}
    outsider = next(c for c in range(1, len(used) + 2) if c not in used)
    enc = Encoder()
    for n in (1, len(cuts), outsider, 0):
        enc.write_var_uint(n)
    for client, clock in cuts:
        enc.write_u8(STRING | 0x80)  # a string with an origin
        enc.write_var_uint(client)
        enc.write_var_uint(clock)
        enc.write_var_string("x")
    enc.write_var_uint(0)  # no deletions
    return enc.to_bytes(), outsider


def past_update(doc: Doc[Any], now: Version, version: Version) -> bytes:
    """The whole document as it was at `version`, from the engine document `doc` (at `now`).
    Raises `HistoryUnavailable` unless `doc` has seen `version` and still holds its content."""
    if not version <= now:
        raise HistoryUnavailable(
            "this replica has not seen that version (it is not before or equal to the "
            "replica's own); sync first, or ask a replica that has seen it"
        )
    full = doc.get_update()
    items = parse_update(full, details=True).items or []
    missing = unheld(items, version)
    if missing:
        raise HistoryUnavailable(
            f"this replica no longer holds what was live at that version ({missing} "
            f"item(s)): {HistoryUnavailable.COLLECTED}"
        )
    # A copy, split where the version cuts a struct: the engine merges structs it applies
    # whole, so where they are cut is read off the copy.
    copy: Doc[Any] = Doc(skip_gc=True)
    copy.apply_update(full)
    full = copy.get_update()
    splitting = _splitting(parse_update(full, details=True).items or [], version)
    if splitting is not None:
        copy.apply_update(splitting[0])
        full = copy.get_update()
    return _structs_until(full, version, splitting[1] if splitting else None)


def _structs_until(full: bytes, version: Version, outsider: int | None) -> bytes:
    """The structs of `full` (a whole document, split at the version's clocks) that `version`
    has, with its delete set: the document as it was then. Each struct is copied as it is
    encoded; only the sections' headers are written anew."""
    parsed = parse_update(full, details=True)
    items, starts, ends = parsed.items or [], parsed.starts or [], parsed.section_ends or {}
    clocks = version.clocks
    sections: list[tuple[int, int, int, bytes]] = []  # (client, first clock, count, structs)
    first = 0
    while first < len(items):
        client = items[first].client
        last = first
        while last < len(items) and items[last].client == client:
            last += 1
        limit = clocks.get(client, 0)
        kept = first
        while kept < last and items[kept].clock < limit:
            if items[kept].clock + items[kept].length > limit:
                raise HistoryUnavailable("the engine did not split a struct the version cuts")
            kept += 1
        if kept > first and client != outsider:
            stop = starts[kept] if kept < last else ends[client]
            body = full[starts[first] : stop]
            sections.append((client, items[first].clock, kept - first, body))
        first = last
    enc = Encoder()
    enc.write_var_uint(len(sections))
    for client, clock, count, body in sections:
        for n in (count, client, clock):
            enc.write_var_uint(n)
        enc.write_bytes(body)
    version.deleted.clip_to(clocks).encode_into(enc)
    return enc.to_bytes()


_COLLECTABLE = frozenset({JSON, BINARY, STRING, EMBED, FORMAT, ANY})
"""Contents a collected item drops (a nested type's item stays: its own content goes item by
item)."""


def collected(full: bytes, before: IdSet) -> bytes:
    """The whole document `full` (an update of a document that keeps history) without the
    content of what `before` deletes, kept as deleted structs of the same length, as Yjs keeps
    collected items, and everything else as it was: the content of what was deleted since (a
    map value overwritten later included), the structs, state and delete set. Structs a range
    of `before` cuts are split by the engine first; the others are copied as encoded."""
    parsed = parse_update(full)
    old = parsed.delete_set.intersection(before)
    if not old:
        return full
    items = parse_update(full, details=True).items or []
    cuts = [
        (item.client, edge - 1)
        for item in items
        if item.content in _COLLECTABLE and item.length > 1
        for edge in _edges_inside(old, item.client, item.clock, item.clock + item.length)
    ]
    outsider = None
    splitting = _split_after(items, cuts)
    if splitting is not None:
        copy: Doc[Any] = Doc(skip_gc=True)
        copy.apply_update(full)
        copy.apply_update(splitting[0])
        full, outsider = copy.get_update(), splitting[1]
    split = parse_update(full, details=True)
    items, starts, ends = split.items or [], split.starts or [], split.section_ends or {}
    enc = Encoder()
    enc.write_var_uint(len({item.client for item in items} - {outsider}))
    at = 0
    while at < len(items):
        client, first = items[at].client, at
        while at < len(items) and items[at].client == client:
            at += 1
        if client == outsider:
            continue
        for n in (at - first, client, items[first].clock):
            enc.write_var_uint(n)
        for number in range(first, at):
            item = items[number]
            end = item.clock + item.length
            if item.content in _COLLECTABLE and not old.gaps(client, item.clock, end):
                _write_deleted(enc, item)
            else:
                stop = starts[number + 1] if number + 1 < at else ends[client]
                enc.write_bytes(full[starts[number] : stop])
    parsed.delete_set.encode_into(enc)
    return enc.to_bytes()


def _edges_inside(ids: IdSet, client: int, start: int, end: int) -> list[int]:
    """Where the ranges of `ids` begin or end strictly inside clocks `[start, end)`."""
    ranges = ids.ranges.get(client)
    if not ranges:
        return []
    at = max(bisect.bisect_right(ranges, (start, start)) - 1, 0)
    edges = []
    while at < len(ranges) and ranges[at][0] < end:
        edges += [edge for edge in ranges[at] if start < edge < end]
        at += 1
    return edges


def _write_deleted(enc: Encoder, item: Item) -> None:
    """`item` as a deleted struct of its length: its origins (or its parent), no content."""
    origin, right = item.origin, item.right_origin
    info = DELETED | (0x80 if origin else 0) | (0x40 if right else 0)
    if not origin and not right and item.parent_sub is not None:
        info |= 0x20
    enc.write_u8(info)
    for ref in (origin, right):
        if ref:
            enc.write_var_uint(ref[0])
            enc.write_var_uint(ref[1])
    if not origin and not right:
        parent = item.parent
        if isinstance(parent, str):
            enc.write_var_uint(1)
            enc.write_var_string(parent)
        elif isinstance(parent, tuple):
            enc.write_var_uint(0)
            enc.write_var_uint(parent[0])
            enc.write_var_uint(parent[1])
        else:
            raise HistoryUnavailable("a struct to collect names no parent")
        if item.parent_sub is not None:
            enc.write_var_string(item.parent_sub)
    enc.write_var_uint(item.length)


def _sticky(client: int, clock: int) -> bytes:
    """A Yjs relative position just before the item with id `client:clock`."""
    enc = Encoder()
    for n in (0, client, clock):
        enc.write_var_uint(n)
    enc.write_var_int(0)
    return enc.to_bytes()


def text_offsets(text: Text, ids: list[tuple[int, int]]) -> list[int]:
    """The engine offset (UTF-8 bytes, one per embed) of each live item id in `text`.
    `HistoryUnavailable` when the engine cannot place them (it panics on some versions a
    hostile token names, such as one deleting half of a surrogate pair)."""
    try:
        return [StickyIndex.decode(_sticky(c, k), text).get_index() for c, k in ids]
    except BaseException as exc:  # a PanicException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise HistoryUnavailable(f"the engine cannot place the text's items: {exc}") from None

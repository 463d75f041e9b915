"""Cutting a large update into smaller ones that, applied in order, do exactly what it does.

A hub must not stop serving everyone while it judges and applies one update of a hundred thousand
tiny structs (a megabyte of them keeps the gate busy for most of a second). Yjs v1 structs are
self-contained: each names its origins and parent by id, and only the first struct of a client's
section takes its clock from the section header. So any run of consecutive structs of one client,
under a header of its own, is an update; the runs in order, then the delete set, do what the whole
does. A run that refers to a later run of another client waits for it in the causal buffer, as any
update would.
"""

from __future__ import annotations

from collections.abc import Mapping

from crdtdoc.contents import GC, SKIP
from crdtdoc.encoding import Encoder
from crdtdoc.idset import IdSet
from crdtdoc.updates import ClientStructs, Item, ParsedUpdate, deletes_only

SLICE_STRUCTS = 2000
"""Structs per slice: judging and applying this many takes a few tens of milliseconds."""


def slice_update(
    data: bytes,
    parsed: ParsedUpdate,
    state: Mapping[int, int],
    max_structs: int = SLICE_STRUCTS,
) -> list[tuple[bytes, ParsedUpdate]]:
    """`data` as updates of at most `max_structs` structs each, in an order a document with
    state vector `state` can apply one by one, each with its parse (items included), then its
    deletions if any. `[(data, parsed)]` when it is that small already, or when it cannot be
    applied on `state` as it is (it waits for other data, or skips ids not present): it then
    waits whole. A skip over ids `state` has is left out (runs never carry one).
    `parsed` comes from `parse_update(data, details=True)`.

    Runs are taken greedily, as Yjs integrates structs: the next structs of any client whose
    references are all present (in `state` or in earlier runs). Cutting each client's section in
    fixed windows instead could make two runs wait for each other."""
    if parsed.count <= max_structs:
        return [(data, parsed)]
    items, starts, ends = parsed.items, parsed.starts, parsed.section_ends
    if items is None or starts is None or ends is None:
        raise ValueError("slice_update needs the items: parse_update(data, details=True)")
    sections: dict[int, list[int]] = {}  # client -> [next item, end item]
    for index, item in enumerate(items):
        sections.setdefault(item.client, [index, index])[1] = index + 1
    known = dict(state)
    parts: list[tuple[bytes, ParsedUpdate]] = []
    while sections:
        progressed = False
        for client, bounds in list(sections.items()):
            first = last = bounds[0]
            while last < bounds[1] and last - first < max_structs:
                item = items[last]
                if item.content == SKIP:  # a gap: passable only over ids already present
                    if item.clock + item.length > known.get(client, 0) or last > first:
                        break
                    first = last = last + 1  # a run never carries a skip
                    progressed = True
                    continue
                if item.clock > known.get(client, 0) or not _present(item, known):
                    break
                known[client] = max(known.get(client, 0), item.clock + item.length)
                last += 1
            if last > first:
                progressed = True
                end = starts[last] if last < bounds[1] else ends[client]
                parts.append(_run(data, items[first:last], starts[first], end))
            bounds[0] = last
            if last == bounds[1]:
                del sections[client]
        if not progressed:
            return [(data, parsed)]
    if parsed.delete_set:
        tail = deletes_only(parsed.delete_set)
        parts.append((tail, ParsedUpdate({}, {}, parsed.delete_set, 1, len(tail), [], 0)))
    return parts


def _present(item: Item, known: Mapping[int, int]) -> bool:
    """Whether every id `item` refers to is present in a document with state `known`."""
    for ref in (item.origin, item.right_origin, item.parent):
        if isinstance(ref, tuple) and ref[1] >= known.get(ref[0], 0):
            return False
    return True


def _run(data: bytes, items: list[Item], start: int, end: int) -> tuple[bytes, ParsedUpdate]:
    """One run of one client's structs (`data[start:end]`) as an update of its own."""
    header = Encoder()
    for number in (1, len(items), items[0].client, items[0].clock):
        header.write_var_uint(number)
    body = header.to_bytes() + data[start:end] + b"\x00"
    return body, _parse_of(items, body)


def _parse_of(items: list[Item], body: bytes) -> ParsedUpdate:
    """What `parse_update(body, details=True)` returns for one run of one client's structs."""
    first, last = items[0], items[-1]
    entry = ClientStructs(first.clock, last.clock + last.length)
    references: dict[int, int] = {}
    for item in items:
        if item.content == GC:
            entry.gcs.append((item.clock, item.clock + item.length))
        for ref in (item.origin, item.right_origin, item.parent):
            if isinstance(ref, tuple) and references.get(ref[0], 0) <= ref[1]:
                references[ref[0]] = ref[1] + 1
    structs = {first.client: entry}
    return ParsedUpdate(structs, references, IdSet(), len(body) - 1, len(body), items, len(items))

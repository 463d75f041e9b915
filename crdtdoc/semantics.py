"""The semantic gate: refuses byte-valid updates that Yjs and yrs would read differently.

`crdtdoc.updates` checks that an update is well formed; this module checks that it means the same
thing to every engine, against the document it is applied to (`crdtdoc.itemindex`). Each rule
below was measured: yrs (pycrdt) and Yjs 13.6 disagree on, or yrs refuses mid-apply, exactly the
items it refuses, and no stock Yjs client writes them (tests/interop/test_yjs_fuzz.py runs Yjs's
own operation kinds through a hub and expects zero refusals):

- `neighbours`: an item's origin and right origin must lie in one parent, under one map key.
  Otherwise yrs links the item into two lists at once and hides the rest of a text.
- `collected`: an item may not sit between a garbage-collected neighbour and a live one (Yjs
  drops it; yrs keeps it).
- `parent`: a parent id must name a type (or a deleted or collected one; then both engines
  drop the item). yrs refuses any other item mid-apply.
- `map value`: a map entry holds what Yjs writes there: an any value, binary, a type or a
  subdocument. A string there reads whole in yrs and as its last character in Yjs; a format
  makes every read of the map fail in pycrdt; an embed is never written there.
- `sequence`: a sequence holds one family of content: a text's strings, embeds and formats, or an
  array's values, binaries and subdocuments (types and deletions fit both); a Y.Map or XmlHook
  holds no sequence, an XML element or fragment holds only types.

Every refusal is an `InvalidUpdate` whose message names the rule and the item.
"""

from __future__ import annotations

from crdtdoc.errors import InvalidUpdate
from crdtdoc.itemindex import SEQUENCE_FAMILY, ItemIndex, Locator, Place
from crdtdoc.roots import BOOKKEEPING_ARRAYS, BOOKKEEPING_MAPS
from crdtdoc.updates import (
    ANY,
    BINARY,
    CONTENT_NAMES,
    DELETED,
    DOC,
    GC,
    SKIP,
    TYPE,
    Id,
    Item,
)

MAP_VALUES = frozenset({ANY, BINARY, TYPE, DOC, DELETED})
"""Content kinds Yjs writes as map entries (`YMap.set`, XML attributes)."""
_TYPE_SEQUENCES = {
    "Text": "text",
    "XmlText": "text",
    "Array": "array",
    "XmlElement": "types",
    "XmlFragment": "types",
    "Map": "none",
    "XmlHook": "none",
}

_BOOKKEEPING_SEQUENCES = {name: "none" for name in BOOKKEEPING_MAPS}
_BOOKKEEPING_SEQUENCES.update({name: "array" for name in BOOKKEEPING_ARRAYS})
"""crdtdoc's own roots have known kinds (PROTOCOL.md section 6), whatever arrives first."""


def check_update(index: ItemIndex, items: list[Item], state: dict[int, int]) -> Locator:
    """Raises `InvalidUpdate` naming the rule an item of this update breaks; returns the
    locator that placed its items (for judging them further). Items wholly present already
    (`state`) are not judged: the engines skip them.
    Every id the new items reference must be in `index` or in `items` (the caller applies an
    update only once its dependencies are present)."""
    locator = Locator(index, items, state)
    families: dict[str | Id, str] = {}
    for item in items:
        if item.content in (GC, SKIP) or item.clock + item.length <= state.get(item.client, 0):
            continue
        place = _judge_neighbours(locator, item)
        if place is None or place.collected:
            continue
        if place.sub is not None:
            if item.content not in MAP_VALUES:
                raise _refuse(
                    "map value",
                    item,
                    f"a {CONTENT_NAMES[item.content]} cannot be a map value (Yjs writes any, "
                    "binary, type or doc content there)",
                )
            continue
        family = SEQUENCE_FAMILY.get(item.content)
        if family is None and item.content != TYPE:
            continue  # a deletion fits every sequence
        parent = place.parent
        if parent is None:
            continue
        expected = _expected_sequence(index, families, parent)
        if expected == "none" or (expected == "types" and item.content != TYPE):
            kind = index.type_name(parent) if isinstance(parent, tuple) else None
            raise _refuse(
                "sequence",
                item,
                f"a Y.{kind} holds "
                + ("no sequence" if expected == "none" else "only types as children")
                + f", not {CONTENT_NAMES[item.content]} content",
            )
        if family is not None and expected in ("text", "array") and expected != family:
            raise _refuse(
                "sequence",
                item,
                f"{CONTENT_NAMES[item.content]} content in a sequence that holds {expected} "
                f"content ({_describe(parent)})",
            )
        if family is not None and expected is None:
            families[parent] = family
    return locator


def _expected_sequence(
    index: ItemIndex, families: dict[str | Id, str], parent: str | Id
) -> str | None:
    if isinstance(parent, tuple):
        name = index.type_name(parent)
        if name is not None:
            return _TYPE_SEQUENCES.get(name)
    elif parent in _BOOKKEEPING_SEQUENCES:
        return _BOOKKEEPING_SEQUENCES[parent]
    return index.family(parent) or families.get(parent)


def _judge_neighbours(locator: Locator, item: Item) -> Place | None:
    """The item's place, after refusing neighbours and parents the engines disagree on."""
    if isinstance(item.parent, tuple):
        holder = locator.place_of_id(item.parent)
        if holder is None:
            raise _refuse("parent", item, f"its parent {_id(item.parent)} is not in the document")
        if not holder.collected and holder.content not in (TYPE, DELETED):
            raise _refuse(
                "parent",
                item,
                f"its parent {_id(item.parent)} holds {CONTENT_NAMES.get(holder.content)} "
                "content, not a type",
            )
        return locator.place(item)
    if item.origin is not None and item.right_origin is not None:
        left = locator.place_of_id(item.origin)
        right = locator.place_of_id(item.right_origin)
        if left is not None and right is not None:
            if left.collected != right.collected:
                raise _refuse(
                    "collected",
                    item,
                    "one neighbour is garbage-collected and the other is live (Yjs drops such an "
                    "item, yrs keeps it)",
                )
            if not left.collected and (left.parent, left.sub) != (right.parent, right.sub):
                raise _refuse(
                    "neighbours",
                    item,
                    f"its origin lies in {_describe(left.parent, left.sub)} and its right "
                    f"origin in {_describe(right.parent, right.sub)}",
                )
    place = locator.place(item)
    if place is None:
        raise _refuse("neighbours", item, "a neighbour it names is not in the document")
    return place


def _refuse(rule: str, item: Item, why: str) -> InvalidUpdate:
    return InvalidUpdate(f"semantic rule '{rule}': item {item.client}:{item.clock}: {why}")


def _id(ref: Id) -> str:
    return f"{ref[0]}:{ref[1]}"


def _describe(parent: str | Id | None, sub: str | None = None) -> str:
    if isinstance(parent, str):
        where = f"root {parent!r}"
    else:
        where = f"type {_id(parent)}" if parent is not None else "a collected type"
    return f"{where} key {sub!r}" if sub is not None else where

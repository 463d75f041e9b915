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
- `surrogate pair`: nothing splits a UTF-16 surrogate pair (the two clocks Yjs gives a character
  beyond U+FFFF) of a string that is text: in the document and not deleted, or in the update.
  No item has a high half as origin or a low half as right origin (it would go between the
  halves), no string item's new part starts at a low half of its own text (ids the document has
  are skipped), and no deletion starts or ends between the halves (`check_deletions`). Yjs
  replaces a split pair's halves by U+FFFD; yrs, UTF-8 inside, deletes or cuts another
  character and can encode a zero-length struct that nobody reads back. A deleted pair is no
  longer text in either engine (both keep a length), so splitting it is harmless: refusing it
  would also depend on whether a replica saw the string before its deletion.

Every refusal is an `InvalidUpdate` whose message names the rule and the item.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from crdtdoc.contents import ANY, BINARY, CONTENT_NAMES, DELETED, DOC, EMBED, GC, SKIP, STRING, TYPE
from crdtdoc.encoding import Decoder
from crdtdoc.errors import InvalidUpdate
from crdtdoc.idset import IdSet
from crdtdoc.itemindex import ItemIndex, Locator, holds, low_halves
from crdtdoc.places import SEQUENCE_FAMILY, Place
from crdtdoc.roots import BOOKKEEPING_ARRAYS, BOOKKEEPING_MAPS
from crdtdoc.updates import Id, Item, ParsedUpdate

MAP_VALUES: Final = frozenset({ANY, BINARY, TYPE, DOC, DELETED})
"""Content kinds Yjs writes as map entries (`YMap.set`, XML attributes)."""
_TYPE_SEQUENCES: Final = {
    "Text": "text",
    "XmlText": "text",
    "Array": "array",
    "XmlElement": "types",
    "XmlFragment": "types",
    "Map": "none",
    "XmlHook": "none",
}

_BOOKKEEPING_SEQUENCES: Final = {name: "none" for name in BOOKKEEPING_MAPS}
_BOOKKEEPING_SEQUENCES.update({name: "array" for name in BOOKKEEPING_ARRAYS})
"""crdtdoc's own roots have known kinds (PROTOCOL.md section 6), whatever arrives first."""


def check_update(
    index: ItemIndex, items: list[Item], state: dict[int, int], deleted: IdSet | None = None
) -> Locator:
    """Raises `InvalidUpdate` naming the rule an item of this update breaks; returns the
    locator that placed its items (for judging them further). Items wholly present already
    (`state`) are not judged: the engines skip them. `deleted`: the document's deleted ids
    (a pair deleted there may be split; None: the document deleted nothing).
    Every id the new items reference must be in `index` or in `items` (the caller applies an
    update only once its dependencies are present)."""
    locator = Locator(index, items, state)
    families: dict[str | Id, str] = {}
    pairs = _Pairs(index, state, deleted) if index.has_pairs() else None
    for item in items:
        if item.content in (GC, SKIP) or item.clock + item.length <= state.get(item.client, 0):
            continue
        if item.content == STRING and item.length != len(item.value):  # astral characters
            pairs = pairs or _Pairs(index, state, deleted)
            pairs.add(item)  # refuses a new part starting inside a pair
        elif item.content == EMBED and isinstance(item.value, str):
            raise _refuse(
                "string embed",
                item,
                "an embed that is a string (Yjs writes a string as text, never as an embed; yrs "
                "reads it as characters that take one position, so every index after it shifts)",
            )
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
    if pairs is not None:  # the rest of the rule, where there are pairs
        pairs.judge_anchors(items)
    return locator


def check_deletions(
    index: ItemIndex,
    ranges: Iterable[tuple[int, int, int]],
    items: list[Item] | None,
    state: Mapping[int, int],
    deleted: IdSet | None = None,
) -> None:
    """Raises `InvalidUpdate` (rule `surrogate pair`) when a deleted range `(client, start,
    end)` starts or ends between the halves of a surrogate pair that is text: in the document
    (`index`, ids below `state`, not in `deleted`) or in the update's own `items` (its structs
    are integrated before its deletions). Judge the ranges as the engines apply them, one by
    one (`written_deletions`): a range that cuts a pair splits it even when another range of
    the update deletes the rest, and so does one of length zero. Ranges over ids known to
    neither are not judged: the caller judges them again once their ids are present."""
    pairs = None
    for item in items or ():
        if (
            item.content == STRING
            and item.length != len(item.value)  # astral characters
            and item.clock + item.length > state.get(item.client, 0)
        ):
            pairs = pairs or _Pairs(index, state, deleted)
            pairs.add(item)
    if pairs is None:
        if not index.has_pairs():
            return  # no pair anywhere: most documents, at the cost of one call
        pairs = _Pairs(index, state, deleted)
    for client, start, end in ranges:
        if client not in pairs.local and not index.has_pairs(client):
            continue
        for at in (start, end):
            if pairs.split(client, at):
                raise InvalidUpdate(
                    f"semantic rule 'surrogate pair': item {client}:{at - 1}: the deleted range "
                    f"{client}:{start}+{end - start} {'starts' if at == start else 'ends'} "
                    f"between the halves of the surrogate pair {client}:{at - 1}-{at} "
                    f"({_SPLIT})"
                )


def written_deletions(data: bytes, parsed: ParsedUpdate) -> Iterator[tuple[int, int, int]]:
    """The update's deleted ranges `(client, start, end)` as written, in order, neither merged
    nor dropped when empty (`parsed.delete_set` merges them; the engines do not). Lazy: read
    only when there are pairs to split."""
    dec = Decoder(bytes(data[parsed.ds_offset :]), InvalidUpdate)  # checked by the parser
    for _ in range(dec.read_var_uint()):
        client = dec.read_var_uint()
        for _ in range(dec.read_var_uint()):
            clock = dec.read_var_uint()
            yield client, clock, clock + dec.read_var_uint()


_CYCLE: Final = (
    "its place depends, through the update's own items, on itself (no engine integrates a "
    "cycle: Yjs and yrs keep it pending for ever)"
)
_SPLIT: Final = "Yjs would keep U+FFFD for each half, yrs delete or cut another character"


class _Pairs:
    """Where the surrogate pairs that are text lie, for one update: the low halves of its own
    new strings (clocks from `state` on) and the document's (`index`), not deleted there."""

    def __init__(self, index: ItemIndex, state: Mapping[int, int], deleted: IdSet | None) -> None:
        self.lows = index.pairs
        self.state = state
        self.deleted = deleted
        self.local: dict[int, set[int]] = {}  # client -> the low halves in new strings

    def add(self, item: Item) -> None:
        """Records a new string item's pairs; refuses it when its new part (the engines skip
        the ids the document has) would start at the low half of a pair of its own text."""
        start = self.state.get(item.client, 0)
        lows = low_halves(item)
        if item.clock < start and holds(lows, start):
            raise _refuse(
                "surrogate pair",
                item,
                f"its new part, from {item.client}:{start} (the document has the ids before), "
                f"starts inside a surrogate pair of its text ({_SPLIT})",
            )
        self.local.setdefault(item.client, set()).update(c for c in lows if c >= start)

    def split(self, client: int, clock: int) -> bool:
        """Whether `client:clock` is the low half of a pair that is text (cutting between it
        and `clock - 1` splits the pair). On every anchor of every update where there are
        pairs: a dictionary lookup, and a bisection for a client that wrote any."""
        local = self.local.get(client)
        if local is not None and clock >= self.state.get(client, 0):
            return clock in local  # the update's own text: not deleted yet
        lows = self.lows.get(client)
        if lows is None:
            return False
        pos = bisect.bisect_left(lows, clock)
        if pos == len(lows) or lows[pos] != clock:
            return False
        deleted = self.deleted
        return deleted is None or not (
            deleted.contains(client, clock) or deleted.contains(client, clock - 1)
        )

    def judge_anchors(self, items: list[Item]) -> None:
        """Refuses an item (beyond `state`) that would go between the halves of a pair."""
        state = self.state
        for item in items:
            origin, right = item.origin, item.right_origin
            if item.content in (GC, SKIP) or item.clock + item.length <= state.get(item.client, 0):
                continue
            if origin is not None and self.split(origin[0], origin[1] + 1):
                raise _refuse(
                    "surrogate pair",
                    item,
                    f"its origin {_id(origin)} is the high half of a surrogate pair: it would "
                    f"go between the halves ({_SPLIT})",
                )
            if right is not None and self.split(right[0], right[1]):
                raise _refuse(
                    "surrogate pair",
                    item,
                    f"its right origin {_id(right)} is the low half of a surrogate pair: it "
                    f"would go between the halves ({_SPLIT})",
                )


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
    place = locator.place(item)
    if locator.cyclic:
        raise _refuse("neighbours", item, _CYCLE)
    if isinstance(item.parent, tuple):
        return place
    if item.origin is not None and item.right_origin is not None:
        left, right = locator.neighbour_places(item)  # as the place was resolved from them
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

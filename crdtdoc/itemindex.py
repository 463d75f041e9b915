"""`ItemIndex`: where every item of a document lives, and what kind of content it holds.

An update names the parent of an item only when the item has no neighbours; otherwise the parent
and map key are inherited from the item's origin (or right origin). So telling what an item *is*
(which artifact it belongs to, which map entry it overwrites, whether its content fits there)
needs the whole document's structure. The index keeps that as sorted runs of ids per client, each
run with one place (parent and map key) and one content kind, built once from a document and then
extended with each update, so questions about an update cost a few bisections per item. It also
knows where the surrogate pairs of the document's strings are (`low_half`), so that no update
splits one (`crdtdoc.semantics`).

The hub uses it to judge updates by the artifacts and entries they touch (`crdtdoc.server.access`),
every replica uses it to refuse updates the engines would read differently (`crdtdoc.semantics`),
and a replica uses it to tell cheaply whether others changed what a guarded write depends on.
"""

from __future__ import annotations

import bisect
import itertools
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, cast

from crdtdoc.contents import DELETED, GC, SKIP, STRING, TYPE
from crdtdoc.places import ARRAY, COLLECTED, MIXED, SEQUENCE_FAMILY, TEXT, Parent, Place
from crdtdoc.updates import Id, Item

_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
"""A character beyond U+FFFF: two UTF-16 code units (a surrogate pair), so two Yjs clocks."""


def low_halves(item: Item, start: int = 0) -> list[int]:
    """The clocks (from `start` on) of the low halves of the surrogate pairs in a string item.

    Yjs gives a character beyond U+FFFF two clocks, its UTF-16 halves; the second one, the low
    half, is where a deletion or an insertion would split it. Empty for other content, and for
    a string whose clock length is its length in code points (no such character: most text),
    which costs one comparison."""
    value = item.value
    if item.content != STRING or not isinstance(value, str) or item.length == len(value):
        return []
    lows = []
    if len(value) < 32:  # a few characters typed: a loop beats the regular expression
        clock = item.clock
        for char in value:
            clock += 1
            if char > "\uffff":
                if clock >= start:
                    lows.append(clock)
                clock += 1
        return lows
    for before, match in enumerate(_ASTRAL.finditer(value)):
        clock = item.clock + match.start() + before + 1  # `before` pairs: one unit more each
        if clock >= start:
            lows.append(clock)
    return lows


def holds(clocks: Sequence[int], clock: int) -> bool:
    """Whether sorted `clocks` hold `clock` (a bisection)."""
    pos = bisect.bisect_left(clocks, clock)
    return pos < len(clocks) and clocks[pos] == clock


class ClientRuns:
    """One client's runs of ids, in order: run i holds clocks `starts[i]` up to `ends[i]`, all
    at `places[i]`. Three lists, not a list of tuples: the common step, a run growing by the
    item just written after it, then sets one number instead of building a tuple."""

    __slots__ = ("ends", "places", "starts")

    def __init__(self, start: int, end: int, place: Place) -> None:
        self.starts = [start]
        self.ends = [end]
        self.places = [place]


class ItemIndex:
    """client -> sorted runs of ids, each with one place, over every item id of a document."""

    def __init__(self) -> None:
        self._runs: dict[int, ClientRuns] = {}
        self._types: dict[Id, str] = {}  # id of a type item -> its type name ("Text", ...)
        self._type_roots: dict[Id, str | None] = {}  # cache: the root a type item lives under
        self._families: dict[str | Id, str] = {}  # sequence parent -> TEXT, ARRAY or MIXED
        self._root_uses: dict[str, set[str]] = {}  # root -> how its items use it (`uses`)
        # client -> sorted clocks of the low halves of surrogate pairs in its string items (4
        # bytes each, and nothing for a client whose strings hold no character beyond U+FFFF)
        self._lows: dict[int, array[int]] = {}

    # -- lookups ---------------------------------------------------------------------------

    def place_of(self, client: int, clock: int) -> Place | None:
        """The place of the item holding id `client:clock`, or None if the id is unknown."""
        runs = self._runs.get(client)
        if runs is None:
            return None
        pos = bisect.bisect_right(runs.starts, clock) - 1
        if pos < 0 or clock >= runs.ends[pos]:
            return None
        return runs.places[pos]

    def low_half(self, client: int, clock: int) -> bool:
        """Whether id `client:clock` is the low half of a surrogate pair in a string item (its
        high half is `client:clock - 1`, in the same item). Deleted or not: the index does not
        follow deletions."""
        lows = self._lows.get(client)
        return lows is not None and holds(lows, clock)

    @property
    def pairs(self) -> Mapping[int, Sequence[int]]:
        """client -> the sorted clocks of the low halves of surrogate pairs in its string
        items (clients whose text has none are absent). Read-only: the index's own."""
        return self._lows

    def has_pairs(self, client: int | None = None) -> bool:
        """Whether any string item recorded (of `client`, if given) holds a character beyond
        U+FFFF."""
        return bool(self._lows) if client is None else client in self._lows

    def type_name(self, type_id: Id) -> str | None:
        """The Yjs type name ("Text", "Map", ...) of a type item, None if `type_id` is not one."""
        return self._types.get(type_id)

    def family(self, parent: str | Id) -> str | None:
        """TEXT, ARRAY (or MIXED) when the sequence under `parent` is known to be one."""
        if isinstance(parent, tuple):
            name = self._types.get(parent)
            if name in ("Text", "XmlText"):
                return TEXT
            if name == "Array":
                return ARRAY
        return self._families.get(parent)

    def uses(self, root: str) -> frozenset[str]:
        """How the items of a root use it: "map" (entries under keys), TEXT or ARRAY (sequence
        content), "xml" (XML elements as children, as a Y.XmlFragment holds them), "types"
        (other nested types as children). Empty for a root nothing was written to."""
        return frozenset(self._root_uses.get(root, ()))

    def root_of_parent(self, parent: Parent) -> str | None:
        """The root (artifact) under which a parent lives, None when collected or unknown."""
        if parent is None or isinstance(parent, str):
            return parent
        if parent in self._type_roots:
            return self._type_roots[parent]
        root: str | None = None
        chain = [parent]
        current: Parent = parent
        for _ in range(10_000):  # nesting is bounded by the parser's limits; cycles are not
            place = self.place_of(current[0], current[1]) if isinstance(current, tuple) else None
            if place is None:
                break
            if place.parent is None or isinstance(place.parent, str):
                root = place.parent
                break
            if place.parent in self._type_roots:
                root = self._type_roots[place.parent]
                break
            current = place.parent
            chain.append(current)
        for type_id in chain:
            self._type_roots[type_id] = root
        return root

    def root_of(self, client: int, clock: int) -> str | None:
        place = self.place_of(client, clock)
        return None if place is None else self.root_of_parent(place.parent)

    def runs(self, client: int, start: int, end: int) -> Iterable[tuple[int, int, Place | None]]:
        """The ids [start, end) of `client` cut into runs of one place (None: unknown ids)."""
        runs = self._runs.get(client)
        starts, ends, places = (
            (runs.starts, runs.ends, runs.places) if runs is not None else _NO_RUNS
        )
        covered = start
        for i in range(max(bisect.bisect_right(starts, start) - 1, 0), len(starts)):
            run_start, run_end, place = starts[i], ends[i], places[i]
            if run_start >= end:
                break
            if run_end <= covered:
                continue
            if run_start > covered:
                yield covered, run_start, None
            yield max(run_start, covered), min(run_end, end), place
            covered = run_end
        if covered < end:
            yield covered, end, None

    def roots_of_range(self, client: int, start: int, end: int) -> set[str | None]:
        """Roots of the ids [start, end) of `client` (None for ids not in the document)."""
        return {
            None if place is None else self.root_of_parent(place.parent)
            for _, _, place in self.runs(client, start, end)
        }

    # -- an update's items -----------------------------------------------------------------

    def add(
        self,
        items: list[Item],
        state: dict[int, int] | None = None,
        locator: Locator | None = None,
    ) -> None:
        """Records the items of an applied update (only ids beyond `state`, when given);
        `locator` is the one that placed them for the semantic gate, if any."""
        locator = locator or Locator(self, items, state)
        for item in items:
            if item.content == SKIP:
                continue
            start = item.clock
            if state is not None:
                start = max(start, state.get(item.client, 0))
                if start >= item.clock + item.length:
                    continue
            found = None if item.content == GC else locator.place(item)
            # An item the engines cannot place either is dropped: collected. A place the
            # locator made for this item already holds its content kind: kept, not copied.
            if found is None:
                place = COLLECTED
            elif found.content == item.content:
                place = found
            else:
                place = Place(found.parent, found.sub, item.content)
            if item.content == TYPE and start == item.clock:
                self._types[(item.client, item.clock)] = str(item.value)
            family = SEQUENCE_FAMILY.get(item.content)
            if isinstance(place.parent, str) and item.content not in (DELETED, GC):
                use = "map" if place.sub is not None else family
                if use is None and item.content == TYPE:
                    use = "xml" if str(item.value).startswith("Xml") else "types"
                if use is not None:
                    uses = self._root_uses.get(place.parent)
                    if uses is None:
                        self._root_uses[place.parent] = {use}
                    else:
                        uses.add(use)
            if family is not None and place.sub is None and place.parent is not None:
                known = self._families.setdefault(place.parent, family)
                if known != family:  # trusted data from before the gate: both kinds
                    self._families[place.parent] = MIXED
            if (
                item.content == STRING
                and item.length != len(item.value)  # astral characters (else: no pairs)
                and place.parent is not None  # collected: dropped by the engines
            ):
                self._add_lows(item.client, low_halves(item, start))
            self._insert(item.client, start, item.clock + item.length, place)

    def _add_lows(self, client: int, lows: list[int]) -> None:
        if not lows:
            return
        known = self._lows.get(client)
        if known is None:
            self._lows[client] = array("I", lows)  # clocks are below 2^32 (the parser's bound)
        elif not known or lows[0] > known[-1]:  # the common case: ids arrive in clock order
            known.extend(lows)
        else:
            for clock in lows:
                pos = bisect.bisect_left(known, clock)
                if pos == len(known) or known[pos] != clock:
                    known.insert(pos, clock)

    def _insert(self, client: int, start: int, end: int, place: Place) -> None:
        runs = self._runs.get(client)
        if runs is None:  # the client's first item
            self._runs[client] = ClientRuns(start, end, place)
            return
        starts, ends, places = runs.starts, runs.ends, runs.places
        last = len(ends) - 1
        if start >= ends[last]:  # after every run: ids arrive in clock order, as a rule
            if start == ends[last] and (places[last] is place or places[last] == place):
                ends[last] = end  # the common case: the run grows
            else:
                starts.append(start)
                ends.append(end)
                places.append(place)
            return
        pos = bisect.bisect_left(starts, start)
        if pos < len(starts) and starts[pos] == start:
            return  # already known
        starts.insert(pos, start)
        ends.insert(pos, end)
        places.insert(pos, place)


_VISITING: Final = Place(None, None, -1)
"""Memo mark of an item whose place is being resolved (met again: a cycle, placed nowhere)."""
_ENDS_FROM: Final = 16
"""Updates with more structs than this have their structs' ends mapped (`Locator.ends`)."""
_NO_SIDES: Final[tuple[Place | None, Place | None]] = (None, None)
_NO_RUNS: Final[tuple[list[int], list[int], list[Place]]] = ([], [], [])  # read, never changed
_TOKENS: Final = itertools.count(1)
"""Tokens of locators: each marks the items it placed with its own (`Item.located_by`)."""


class Locator:
    """Resolves the places of one update's items as Yjs does: an item without a parent takes its
    origin's parent and key (else its right origin's), and an item next to a garbage-collected
    neighbour, or inside a collected or deleted parent, is collected.

    Only ids beyond `state` (what the document has) are read from the update itself; an id the
    document has is placed by the index, whatever the update says about it (the engines skip
    structs they have). Resolution is iterative: chains of origins through the update may be as
    long as the update."""

    def __init__(
        self, index: ItemIndex, items: list[Item], state: dict[int, int] | None = None
    ) -> None:
        self.index = index
        self.items = items
        self.state = state or {}
        # A small update's structs are searched one by one (`find_local`). A large one's are
        # grouped by client, for a bisection, and the first and the last id of each struct,
        # what origins and right origins name as a rule, are mapped (`ends`).
        self.small = len(items) <= _ENDS_FROM
        self.local: dict[int, list[Item]] = {}
        self.local_starts: dict[int, list[int]] = {}
        self.ends: dict[object, Item] = {}  # Id -> Item (see `find_ref`)
        if not self.small:
            for item in items:
                mine = self.local.get(item.client)
                if mine is None:
                    self.local[item.client] = [item]
                else:
                    mine.append(item)
                if item.content != SKIP:
                    self.ends[(item.client, item.clock)] = item
                    if item.length > 1:
                        self.ends[(item.client, item.clock + item.length - 1)] = item
            self.local_starts = {c: [i.clock for i in its] for c, its in self.local.items()}
        # Each item's place, and its neighbours', are kept on the item under this locator's
        # token (`Item.located_by`): a token of another locator, or none, means not placed yet.
        self.token = next(_TOKENS)
        # Set when a place depended on an item still being placed: a cycle through the
        # update's own items, which no engine integrates (the semantic gate refuses it).
        self.cyclic = False

    def find_local(self, client: int, clock: int) -> Item | None:
        """The update's struct holding a new id (None for ids the document has)."""
        if clock < self.state.get(client, 0):
            return None
        found: Item | None = None
        if self.small:
            for item in reversed(self.items):  # as the bisection: the last that holds it
                if item.client == client and item.clock <= clock < item.clock + item.length:
                    found = item
                    break
        else:
            starts = self.local_starts.get(client)
            pos = bisect.bisect_right(starts, clock) - 1 if starts else -1
            if pos >= 0:
                found = self.local[client][pos]
        if found is None or clock >= found.clock + found.length or found.content == SKIP:
            return None  # a skipped range is the document's
        return found

    def find_ref(self, ref: object) -> Item | None:
        """`find_local` for an id as an update names it (an origin, a parent: an `Id`).

        Typed `object` so that the compiled build passes the item's own tuple through: given
        an `Id`, mypyc unboxes the tuple and boxes a new one (and both ints) for the lookup."""
        item = self.ends.get(ref)
        client, clock = cast(Id, ref)
        if item is None:
            return self.find_local(client, clock)
        if self.state and clock < self.state.get(client, 0):
            return None  # the document's
        return item

    def place_of_id(self, ref: Id) -> Place | None:
        """The place of the item holding id `ref` (this update's or the document's)."""
        item = self.find_ref(ref)
        if item is None:
            return self.index.place_of(ref[0], ref[1])
        if item.content == GC:
            return COLLECTED
        return self.place(item)

    def root(self, place: Place | None) -> str | None:
        """The root (artifact) a place lives under, through this update's nested types too."""
        parent = place.parent if place is not None else None
        for _ in range(len(self.items) + 1):
            if parent is None or isinstance(parent, str):
                return parent
            holder = self.find_ref(parent)
            if holder is None:
                return self.index.root_of_parent(parent)
            found = self.place(holder)
            parent = found.parent if found is not None else None
        return None

    def neighbour_places(self, item: Item) -> tuple[Place | None, Place | None]:
        """The places of a parentless item's origin and right origin, as `place(item)` used
        them (None for one it does not name, that is unknown, or that is in a cycle with it);
        call it after `place(item)`."""
        if item.located_by != self.token:  # placed by another locator since
            self.place(item)
        if item.sides is not None:
            return cast(tuple[Place | None, Place | None], item.sides)
        return _NO_SIDES

    def place(self, item: Item) -> Place | None:
        """The item's place (None: a neighbour unknown, or a cycle)."""
        found = item.located if item.located_by == self.token else self._place_new(item)
        return None if found is _VISITING else cast(Place | None, found)

    def _place_new(self, item: Item) -> object:
        """Places `item` and the update's items it depends on, without recursion."""
        token = self.token
        stack = [item]
        waiting: dict[int, tuple[Item | None, Item | None]] = {}  # each one's dependencies
        while stack:
            current = stack[-1]
            if current.located_by == token:
                if current.located is not _VISITING:
                    stack.pop()  # placed meanwhile (it was needed twice)
                    continue
                first, second = waiting.pop(id(current))  # its dependencies are placed now
            else:
                current.located_by = token
                current.located = _VISITING
                current.sides = None
                first, second = self._dependencies(current)
                pushed = self._push(first, stack)
                if self._push(second, stack) or pushed:
                    waiting[id(current)] = (first, second)  # alive: it is on the stack
                    continue  # placed first; this one is met again after them
            current.located = self._resolve(current, first, second)
            stack.pop()
        return item.located

    def _dependencies(self, item: Item) -> tuple[Item | None, Item | None]:
        """The update's own items this item's place depends on: its parent type's (an item
        with a parent), else its origin's and its right origin's; None for an id the update
        does not hold (the document's) or does not name."""
        # As `object`, the ids stay the item's own tuples (see `find_ref`).
        parent: object = item.parent
        if parent is not None:
            return (self.find_ref(parent) if isinstance(parent, tuple) else None), None
        origin: object = item.origin
        right_origin: object = item.right_origin
        first = self.find_ref(origin) if origin is not None else None
        second = self.find_ref(right_origin) if right_origin is not None else None
        return first, second

    def _push(self, dep: Item | None, stack: list[Item]) -> bool:
        """Pushes a dependency not placed yet, nor being placed; True if it did."""
        if dep is None or dep.content == GC or dep.located_by == self.token:
            return False
        stack.append(dep)
        return True

    def _known(self, ref: Id, dep: Item | None) -> Place | None:
        """A neighbour's place once its own is resolved (or being resolved: a cycle); `dep` is
        the update's item holding `ref`, None for the document's."""
        if dep is None:
            return self.index.place_of(ref[0], ref[1])
        if dep.content == GC:
            return COLLECTED
        found = dep.located if dep.located_by == self.token else None
        if found is _VISITING:
            self.cyclic = True
            return None
        return cast(Place | None, found)

    def _resolve(self, item: Item, first: Item | None, second: Item | None) -> Place | None:
        """The item's place from its dependencies' (`_dependencies`), placed already."""
        if item.parent is not None:
            if isinstance(item.parent, tuple):
                holder = self._known(item.parent, first)
                if holder is not None and (holder.collected or holder.content == DELETED):
                    return COLLECTED  # a deleted type: Yjs and yrs drop what it gets
            return Place(item.parent, item.parent_sub, item.content)
        left = self._known(item.origin, first) if item.origin is not None else None
        right = self._known(item.right_origin, second) if item.right_origin is not None else None
        item.sides = (left, right)
        if (left is not None and left.collected) or (right is not None and right.collected):
            return COLLECTED
        anchor = left if item.origin is not None else right
        if anchor is None or anchor.content == item.content:
            return anchor  # places are read-only: a text typed letter by letter shares one
        return Place(anchor.parent, anchor.sub, item.content)

"""A parser and validator for Yjs update encoding v1, working from the bytes alone.

`parse_update` reads an update without pycrdt and returns what the replica needs to apply it
safely: the clock range each client's structs cover, the ids those structs reference (and so depend
on), and the delete set. It checks every bound it reads and only ever raises `InvalidUpdate`;
what it keeps is proportional to the input. The format is written down in `protocol/PROTOCOL.md`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from crdtdoc.contents import CONTENT_NAMES, GC, SKIP, read_content
from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import InvalidUpdate
from crdtdoc.idset import IdSet, Range

MAX_CLOCK: Final = 2**32
"""Clocks, and clock + length, must stay below this (yrs stores clocks in 32 bits)."""
MAX_CLIENT_ID: Final = 2**53
"""Client ids must stay below this (JavaScript numbers; yrs cuts ids to 53 bits)."""

Id = tuple[int, int]


# The classes below are written out rather than made with @dataclass: mypyc compiles a
# dataclass's generated __init__ and __eq__ as plain Python, and parsing makes one Item per
# struct, so on the compiled hot path that alone cost more than reading the struct.


class Item:
    """One struct of an update, as read (kept only when `parse_update(details=True)`).
    Read-only by convention, except `located_by`, `located` and `sides`: the memo of the
    `Locator` that placed it last (`crdtdoc.itemindex`), no part of what the item is (neither
    compared nor shown). A memo on the item costs a locator no dict and no object id."""

    __slots__ = (
        "client",
        "clock",
        "content",
        "length",
        "located",
        "located_by",
        "origin",
        "parent",
        "parent_sub",
        "right_origin",
        "sides",
        "value",
    )

    def __init__(
        self,
        client: int,
        clock: int,
        length: int,
        content: int,  # a content ref: STRING, ANY, DELETED, GC, SKIP, ...
        origin: Id | None = None,
        right_origin: Id | None = None,
        parent: str | Id | None = None,  # a root name, a nested type's id, or None (copied)
        parent_sub: str | None = None,  # the map key, for map entries
        value: Any = None,  # str for STRING, list for ANY/JSON, type name for TYPE, ...
    ) -> None:
        self.client = client
        self.clock = clock
        self.length = length
        self.content = content
        self.origin = origin
        self.right_origin = right_origin
        self.parent = parent
        self.parent_sub = parent_sub
        self.value = value
        self.located_by = 0  # the token of the locator that placed it (0: none)
        self.located: object = None  # its place, as that locator found it
        self.sides: object = None  # and the places of its origin and right origin

    def _fields(self) -> tuple[object, ...]:
        return (
            self.client,
            self.clock,
            self.length,
            self.content,
            self.origin,
            self.right_origin,
            self.parent,
            self.parent_sub,
            self.value,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.client, self.clock, self.length, self.content))

    def __repr__(self) -> str:
        return "Item(" + ", ".join(repr(value) for value in self._fields()) + ")"


class ClientStructs:
    """The structs one client contributes to an update: clocks `start` up to `end`, with the
    gaps (Skip structs) it does not carry and its garbage-collected ranges."""

    __slots__ = ("end", "gcs", "skips", "start")

    def __init__(
        self,
        start: int,
        end: int,
        skips: list[Range] | None = None,
        gcs: list[Range] | None = None,
    ) -> None:
        self.start = start
        self.end = end
        self.skips: list[Range] = skips if skips is not None else []
        self.gcs: list[Range] = gcs if gcs is not None else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientStructs) and (
            self.start,
            self.end,
            self.skips,
            self.gcs,
        ) == (other.start, other.end, other.skips, other.gcs)

    def __repr__(self) -> str:
        return f"ClientStructs({self.start}, {self.end}, skips={self.skips}, gcs={self.gcs})"


class ParsedUpdate:
    """What an update carries, depends on and deletes."""

    __slots__ = (
        "count",
        "delete_set",
        "ds_offset",
        "items",
        "references",
        "section_ends",
        "size",
        "starts",
        "structs",
    )

    def __init__(
        self,
        structs: dict[int, ClientStructs],
        references: dict[int, int],  # client -> highest referenced clock + 1
        delete_set: IdSet,
        ds_offset: int,  # byte offset at which the delete set starts
        size: int,
        items: list[Item] | None = None,
        count: int = 0,  # structs carried (what applying the update costs grows with it)
        # With items: the byte offset at which each item starts, and where each client's
        # section ends (`crdtdoc.slicing` cuts a large update into smaller ones with them).
        starts: list[int] | None = None,
        section_ends: dict[int, int] | None = None,
    ) -> None:
        self.structs = structs
        self.references = references
        self.delete_set = delete_set
        self.ds_offset = ds_offset
        self.size = size
        self.items = items
        self.count = count
        self.starts = starts
        self.section_ends = section_ends

    def without_items(self) -> ParsedUpdate:
        """The same, without the items and their offsets (which take ~70x the update's bytes:
        what waits in the causal buffer keeps only the rest, and is parsed again later)."""
        return ParsedUpdate(
            self.structs,
            self.references,
            self.delete_set,
            self.ds_offset,
            self.size,
            None,
            self.count,
        )

    def is_empty(self) -> bool:
        return not self.structs and not self.delete_set

    def clock_ranges(self) -> dict[int, Range]:
        """client -> (first clock, end clock) of the structs carried."""
        return {c: (s.start, s.end) for c, s in self.structs.items()}

    def missing(self, state: dict[int, int]) -> IdSet:
        """Ids a document with state vector `state` lacks before these structs can be applied.

        Empty means the structs can be integrated now: each client's structs begin at or before the
        known clock, every gap (Skip) is already known, and every referenced id is known or carried.
        """
        missing = IdSet()
        for client, s in self.structs.items():
            have = state.get(client, 0)
            if s.start > have:
                missing.add(client, have, s.start)
            else:
                for skip_start, skip_end in s.skips:
                    if skip_end > have:
                        missing.add(client, max(have, skip_start), skip_end)
        for client, needed in self.references.items():
            known = state.get(client, 0)
            own = self.structs.get(client)
            # what is known once these structs are applied (no copy of the whole state)
            have = max(known, own.end) if own is not None and own.start <= known else known
            if needed > have:
                # A gap before this client's own structs is already reported above.
                start = have if own is None or own.start <= known else own.end
                if needed > start:
                    missing.add(client, start, needed)
        return missing

    def clocks_before(self, state: dict[int, int]) -> dict[int, int]:
        """client -> the clock `state` has, for each client whose structs this carries."""
        return {client: state.get(client, 0) for client in self.structs}

    def new_ids(self, state: dict[int, int]) -> bool:
        """True when the structs carry any clock a document with `state` does not have."""
        return any(s.end > state.get(c, 0) for c, s in self.structs.items())


def advance(state: dict[int, int], structs: dict[int, ClientStructs]) -> bool:
    """Moves `state` past the structs of an update just applied; True when they began below
    what `state` had (the update re-sent ids, which an engine skips)."""
    resent = False
    for client, s in structs.items():
        have = state.get(client, 0)
        if s.start < have:
            resent = True
        if s.end > have:
            state[client] = s.end
    return resent


def carried(parsed: ParsedUpdate, state: Mapping[int, int] | None = None) -> IdSet:
    """The ids an update's structs carry (skipped ranges excluded); with `state`, only the ids
    a document with that state vector lacks."""
    ids = IdSet()
    for client, s in parsed.structs.items():
        start = max(s.start, state.get(client, 0)) if state is not None else s.start
        for skip_start, skip_end in s.skips:
            if skip_start > start:
                ids.add(client, start, skip_start)
            start = max(start, skip_end)
        if s.end > start:
            ids.add(client, start, s.end)
    return ids


def decode_delete_set(entry: object) -> IdSet | None:
    """The delete set an entry of the deletions log holds (PROTOCOL.md section 6), None if it
    holds none (not bytes, not exactly one encoded delete set)."""
    if not isinstance(entry, bytes):
        return None
    try:
        dec = Decoder(entry, InvalidUpdate)
        ids = IdSet.decode_from(dec, max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID)
    except InvalidUpdate:
        return None
    return ids if dec.at_end() else None


def structs_only(data: bytes, parsed: ParsedUpdate) -> bytes:
    """The update's structs with an empty delete set."""
    return data[: parsed.ds_offset] + b"\x00"


def deletes_only(delete_set: IdSet) -> bytes:
    """An update carrying no structs and the given delete set."""
    enc = Encoder()
    enc.write_var_uint(0)
    delete_set.encode_into(enc)
    return enc.to_bytes()


def parse_update(data: object, *, details: bool = False) -> ParsedUpdate:
    """Parses and validates a Yjs v1 update; raises `InvalidUpdate` saying what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidUpdate(f"an update must be bytes, not {type(data).__name__}")
    dec = Decoder(bytes(data), InvalidUpdate)
    if dec.end == 0:
        raise InvalidUpdate("empty update: a Yjs v1 update has at least two bytes")
    items: list[Item] | None = [] if details else None
    starts: list[int] | None = [] if details else None
    section_ends: dict[int, int] | None = {} if details else None
    structs: dict[int, ClientStructs] = {}
    references: dict[int, int] = {}
    count = 0
    n_clients = dec.read_count("client", 3)
    for _ in range(n_clients):
        n_structs = dec.read_count("struct", 2)
        client = dec.read_var_uint()
        if client >= MAX_CLIENT_ID:
            raise dec.fail(f"client id {client} is not below 2^53")
        if client in structs:
            raise dec.fail(f"client {client} has two struct sections")
        clock = dec.read_var_uint()
        if clock >= MAX_CLOCK:
            raise dec.fail(f"clock {clock} of client {client} is not below 2^32")
        entry = ClientStructs(clock, clock)
        structs[client] = entry  # registered first so a repeated client is caught
        count += n_structs
        for _ in range(n_structs):
            if starts is not None:
                starts.append(dec.pos)
            clock = _read_struct(dec, client, clock, entry, references, items)
        if section_ends is not None:
            section_ends[client] = dec.pos
        entry.end = clock
        if n_structs == 0:
            del structs[client]
    ds_offset = dec.pos
    delete_set = IdSet.decode_from(dec, max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID)
    if not dec.at_end():
        raise dec.fail(f"{dec.remaining} trailing bytes after the delete set")
    return ParsedUpdate(
        structs, references, delete_set, ds_offset, dec.end, items, count, starts, section_ends
    )


def _reference(dec: Decoder, references: dict[int, int], what: str) -> Id:
    client = dec.read_var_uint()
    if client >= MAX_CLIENT_ID:
        raise dec.fail(f"{what} client id {client} is not below 2^53")
    clock = dec.read_var_uint()
    if clock >= MAX_CLOCK:
        raise dec.fail(f"{what} clock {clock} is not below 2^32")
    if references.get(client, 0) <= clock:
        references[client] = clock + 1
    return client, clock


def _read_struct(
    dec: Decoder,
    client: int,
    clock: int,
    entry: ClientStructs,
    references: dict[int, int],
    items: list[Item] | None,
) -> int:
    """Reads one struct starting at `clock`; returns the clock after it."""
    info = dec.read_u8()
    ref = info & 0x1F
    origin = right_origin = None
    parent: str | Id | None = None
    parent_sub = None
    value: Any = None
    if ref in (GC, SKIP):
        if info != ref:
            raise dec.fail(f"{CONTENT_NAMES[ref]} struct with flag bits set (info byte {info})")
        length = dec.read_var_uint()
    else:
        if info & 0x80:
            origin = _reference(dec, references, "origin")
        if info & 0x40:
            right_origin = _reference(dec, references, "right origin")
        if not info & 0xC0:
            kind = dec.read_var_uint()
            if kind == 1:
                parent = dec.read_var_string()
            elif kind == 0:
                parent = _reference(dec, references, "parent")
            else:
                raise dec.fail(f"parent info {kind} is neither 0 (nested type) nor 1 (root)")
            if info & 0x20:
                parent_sub = dec.read_var_string()
        length, value = read_content(dec, ref)
    for ref_id in (origin, right_origin, parent):
        if isinstance(ref_id, tuple) and ref_id[0] == client and ref_id[1] >= clock:
            # Yjs throws on it and yrs keeps it pending forever: an item only ever names
            # earlier ids of its own client.
            raise dec.fail(f"struct {client}:{clock} refers to its own client's later id")
    if length == 0:
        raise dec.fail(f"zero-length {CONTENT_NAMES.get(ref, ref)} struct at {client}:{clock}")
    end = clock + length
    if end >= MAX_CLOCK:
        raise dec.fail(f"struct {client}:{clock} of length {length} reaches 2^32")
    if ref == SKIP:
        entry.skips.append((clock, end))
    elif ref == GC:
        entry.gcs.append((clock, end))
    if items is not None:
        items.append(
            Item(client, clock, length, ref, origin, right_origin, parent, parent_sub, value)
        )
    return end


def write_state_vector(enc: Encoder, state: dict[int, int]) -> None:
    """The Yjs state-vector encoding: varuint count, then (client, clock) pairs."""
    enc.write_var_uint(len(state))
    for client in sorted(state, reverse=True):
        enc.write_var_uint(client)
        enc.write_var_uint(state[client])


def read_state_vector(dec: Decoder) -> dict[int, int]:
    """Reads a state vector, bounds-checked, through the decoder's own error class."""
    state: dict[int, int] = {}
    for _ in range(dec.read_count("state vector entry", 2)):
        client = dec.read_var_uint()
        clock = dec.read_var_uint()
        if client >= MAX_CLIENT_ID or clock >= MAX_CLOCK:
            raise dec.fail(f"state vector entry {client}:{clock} is out of range")
        state[client] = clock
    return state


def encode_state_vector(state: dict[int, int]) -> bytes:
    enc = Encoder()
    write_state_vector(enc, state)
    return enc.to_bytes()


def decode_state_vector(data: bytes) -> dict[int, int]:
    """Parses a Yjs state vector; raises `InvalidUpdate` on bad bytes."""
    dec = Decoder(bytes(data), InvalidUpdate)
    state = read_state_vector(dec)
    if not dec.at_end():
        raise dec.fail(f"{dec.remaining} trailing bytes after the state vector")
    return state

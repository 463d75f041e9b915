"""Hand-encoded Yjs v1 updates holding odd or damaged items, for testing the readers.

Each update carries items a stock client would not write where they are (a Format item as a map
entry, a ContentString map value, a subdocument where a task belongs...). Tests apply them
straight to the pycrdt Doc under a replica (`replica._doc.apply_update`), as if they had been
stored before any gate refused them.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from crdtdoc.contents import ANY, BINARY, DELETED, DOC, EMBED, FORMAT, JSON, STRING, TYPE
from crdtdoc.encoding import Encoder
from crdtdoc.updates import Item, parse_update

Id = tuple[int, int]

CONTENT_KINDS = ("string", "format", "embed", "any", "binary", "json", "deleted", "type", "doc")
TYPE_REFS = {"Array": 0, "Map": 1, "Text": 2, "XmlElement": 3, "XmlFragment": 4, "XmlHook": 5}
TYPE_REFS["XmlText"] = 6


def write_any(enc: Encoder, value: Any) -> None:
    """Writes a lib0 `Any` value (what Y.Map.set stores)."""
    if value is None:
        enc.write_u8(126)
    elif value is True:
        enc.write_u8(120)
    elif value is False:
        enc.write_u8(121)
    elif isinstance(value, int) and abs(value) < 2**31:
        enc.write_u8(125)
        enc.write_var_int(value)
    elif isinstance(value, int):
        enc.write_u8(122)
        enc.write_bytes(struct.pack(">q", value))
    elif isinstance(value, float):
        enc.write_u8(123)
        enc.write_f64(value)
    elif isinstance(value, str):
        enc.write_u8(119)
        enc.write_var_string(value)
    elif isinstance(value, (bytes, bytearray)):
        enc.write_u8(116)
        enc.write_var_bytes(bytes(value))
    elif isinstance(value, dict):
        enc.write_u8(118)
        enc.write_var_uint(len(value))
        for k, v in value.items():
            enc.write_var_string(k)
            write_any(enc, v)
    elif isinstance(value, (list, tuple)):
        enc.write_u8(117)
        enc.write_var_uint(len(value))
        for v in value:
            write_any(enc, v)
    else:
        raise TypeError(f"cannot encode {value!r} as lib0 Any")


def content(kind: str, value: Any = None) -> tuple[int, bytes, int]:
    """(content ref, encoded content, clock length) of an item of this kind.

    `value`: the string ("string"), the Any values (a list, "any"), the embed or format value,
    the bytes ("binary"), the JSON values ("json"), the type name ("type", default Map), the
    deleted length ("deleted").
    """
    enc = Encoder()
    if kind == "string":
        text = "hello" if value is None else value
        enc.write_var_string(text)
        return STRING, enc.to_bytes(), len(text.encode("utf-16-le")) // 2
    if kind == "format":
        enc.write_var_string("bold")
        enc.write_var_string(json.dumps(True if value is None else value))
        return FORMAT, enc.to_bytes(), 1
    if kind == "embed":
        enc.write_var_string(json.dumps({"image": "x.png"} if value is None else value))
        return EMBED, enc.to_bytes(), 1
    if kind == "any":
        values = ["x"] if value is None else value
        enc.write_var_uint(len(values))
        for v in values:
            write_any(enc, v)
        return ANY, enc.to_bytes(), len(values)
    if kind == "binary":
        enc.write_var_bytes(b"\x01\x02" if value is None else value)
        return BINARY, enc.to_bytes(), 1
    if kind == "json":
        # yrs 0.28 reads one string more than the count says (Yjs reads exactly the count), so
        # this is what pycrdt decodes as one JSON value; crdtdoc's parser refuses it.
        enc.write_var_uint(0)
        enc.write_var_string(json.dumps({"j": 1} if value is None else value))
        return JSON, enc.to_bytes(), 1
    if kind == "deleted":
        length = 1 if value is None else value
        enc.write_var_uint(length)
        return DELETED, enc.to_bytes(), length
    if kind == "type":
        name = "Map" if value is None else value
        enc.write_var_uint(TYPE_REFS[name])
        if name in ("XmlElement", "XmlHook"):
            enc.write_var_string("p")
        return TYPE, enc.to_bytes(), 1
    if kind == "doc":
        enc.write_var_string("sub-guid")
        write_any(enc, {})
        return DOC, enc.to_bytes(), 1
    raise ValueError(f"unknown content kind {kind!r}")


def item(
    ref: int,
    body: bytes,
    *,
    root: str | None = None,
    parent: Id | None = None,
    key: str | None = None,
    origin: Id | None = None,
    right: Id | None = None,
) -> bytes:
    """One encoded item struct."""
    enc = Encoder()
    info = ref
    if origin is not None:
        info |= 0x80
    if right is not None:
        info |= 0x40
    if origin is None and right is None and key is not None:
        info |= 0x20
    enc.write_u8(info)
    for ref_id in (origin, right):
        if ref_id is not None:
            enc.write_var_uint(ref_id[0])
            enc.write_var_uint(ref_id[1])
    if origin is None and right is None:
        if root is not None:
            enc.write_var_uint(1)
            enc.write_var_string(root)
        else:
            assert parent is not None, "an item needs a root, a parent or an origin"
            enc.write_var_uint(0)
            enc.write_var_uint(parent[0])
            enc.write_var_uint(parent[1])
        if key is not None:
            enc.write_var_string(key)
    enc.write_bytes(body)
    return enc.to_bytes()


def update(
    client: int, clock: int, structs: list[bytes], deletes: list[tuple[int, int, int]] = ()
) -> bytes:
    """A v1 update: `structs` of `client` from `clock`, then deletions (client, clock, len)."""
    enc = Encoder()
    enc.write_var_uint(1 if structs else 0)
    if structs:
        enc.write_var_uint(len(structs))
        enc.write_var_uint(client)
        enc.write_var_uint(clock)
        for s in structs:
            enc.write_bytes(s)
    by_client: dict[int, list[tuple[int, int]]] = {}
    for c, k, n in deletes:
        by_client.setdefault(c, []).append((k, n))
    enc.write_var_uint(len(by_client))
    for c, ranges in by_client.items():
        enc.write_var_uint(c)
        enc.write_var_uint(len(ranges))
        for k, n in ranges:
            enc.write_var_uint(k)
            enc.write_var_uint(n)
    return enc.to_bytes()


def sections(*parts: tuple[int, int, list[bytes]]) -> bytes:
    """A v1 update carrying the structs of several clients, each part `(client, first clock,
    structs)` in the order given, and no deletions."""
    enc = Encoder()
    enc.write_var_uint(len(parts))
    for client, clock, structs in parts:
        enc.write_var_uint(len(structs))
        enc.write_var_uint(client)
        enc.write_var_uint(clock)
        for one in structs:
            enc.write_bytes(one)
    enc.write_var_uint(0)
    return enc.to_bytes()


def map_entry(
    client: int,
    clock: int,
    key: str,
    kind: str,
    value: Any = None,
    *,
    root: str | None = None,
    parent: Id | None = None,
    after: Id | None = None,
) -> bytes:
    """An update holding one entry `key` of this content kind in a root or nested map; with
    `after` (the id of the entry it overwrites), the entry replaces that one, as a client that
    saw it would write it."""
    ref, body, _ = content(kind, value)
    if after is not None:
        return update(client, clock, [item(ref, body, origin=after)])
    return update(client, clock, [item(ref, body, root=root, parent=parent, key=key)])


def entry_id(update_bytes: bytes, key: str, under: str | Id, *, kind: int | None = None) -> Id:
    """The id of the last item written explicitly under `key` in root or nested type `under`
    (of content `kind`, if given)."""
    found: list[Item] = [
        i
        for i in parse_update(update_bytes, details=True).items or []
        if i.parent_sub == key and i.parent == under and (kind is None or i.content == kind)
    ]
    if not found:
        raise LookupError(f"no entry {key!r} under {under!r}")
    last = found[-1]
    return (last.client, last.clock + last.length - 1)


def nested_type_id(update_bytes: bytes, key: str, under: str | Id) -> Id:
    """The id of the nested type stored under `key` (in root or nested type `under`)."""
    return entry_id(update_bytes, key, under, kind=TYPE)


def first_item(update_bytes: bytes, root: str) -> Id:
    """The id of the first item written directly into the list or text root `root`."""
    for i in parse_update(update_bytes, details=True).items or []:
        if i.parent == root and i.parent_sub is None:
            return i.client, i.clock
    raise LookupError(f"nothing in {root!r}")


def apply_raw(replica: Any, data: bytes) -> None:
    """Applies `data` straight to the replica's pycrdt Doc, past every check."""
    replica._doc.apply_update(data)


class RawWriter:
    """One hand-encoding client: each call returns an update of its next item(s), clocks in
    sequence (pycrdt holds back an update whose clocks leave a gap)."""

    def __init__(self, client: int, clock: int = 0) -> None:
        self.client = client
        self.clock = clock

    def entry(
        self,
        key: str,
        kind: str,
        value: Any = None,
        *,
        root: str | None = None,
        parent: Id | None = None,
        after: Id | None = None,
    ) -> bytes:
        """A map entry (see `map_entry`)."""
        data = map_entry(
            self.client, self.clock, key, kind, value, root=root, parent=parent, after=after
        )
        self.clock += content(kind, value)[2]
        return data

    def element(
        self,
        kind: str,
        value: Any = None,
        *,
        root: str | None = None,
        parent: Id | None = None,
        origin: Id | None = None,
    ) -> bytes:
        """An element at the start of a list or text (a root or the nested type `parent`), or
        after `origin`."""
        ref, body, length = content(kind, value)
        structs = [item(ref, body, root=root, parent=parent, origin=origin)]
        data = update(self.client, self.clock, structs)
        self.clock += length
        return data

    def last_id(self) -> Id:
        return (self.client, self.clock - 1)

    def delete(self, client: int, clock: int, length: int = 1) -> bytes:
        return update(self.client, self.clock, [], deletes=[(client, clock, length)])


def item_with_parent(parent: Id, client: int = 55) -> bytes:
    """One ContentString item "x" of `client` whose parent is the nested type at `parent`: an
    id that names a string item makes the engine fail mid-apply (past the semantic gate)."""
    enc = Encoder()
    for n in (1, 1, client, 0, 4, 0, parent[0], parent[1]):
        enc.write_var_uint(n)
    enc.write_var_string("x")
    enc.write_var_uint(0)
    return enc.to_bytes()

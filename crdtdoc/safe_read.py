"""Reading what a document holds, whatever it holds: the one place that decides what readers show.

Byte-valid updates can leave entries the engine reads badly or not at all (docs/ARCHITECTURE.md,
what the engine gets wrong): a Format item written as a map entry makes pycrdt raise `KeyError` on
every whole-map read, an XML type raises `ValueError` when converted, and an entry may hold binary
data, a subdocument, a number that is not finite or a value of the wrong type. Every crdtdoc reader
(the artifacts, the bookkeeping registries, the change feed, the hub's supervision page) reads
through here, so no engine error escapes and a damaged entry hides only itself. The rules, each in
one place:

- **Unreadable entries are left out.** An entry the engine cannot read is skipped, one key at a
  time (the common, all-good case is one whole-map read). A Format item as a map entry is one:
  Yjs reads it as `undefined` and its `toJSON` leaves it out too.
- **Values are read as their JSON view** (`json_value`), as Yjs `toJSON` gives it: a nested
  Y.Map is a dict, a Y.Array a list, a Y.Text its text; integral numbers come back as ints.
- **What is not JSON is damaged and left out:** binary data, subdocuments, XML types, numbers
  that are not finite, nesting deeper than `MAX_READ_DEPTH`. A plain value (one Yjs `Any`) is
  whole or damaged; inside a Y.Map or Y.Array each entry stands alone.
- **Registries hold one shape:** `__crdtdoc_artifacts` maps a usable artifact name to a known
  kind (`ARTIFACT_KINDS`), `__crdtdoc_agents` maps a client id written in decimal to a non-empty
  name (`client_id_of`, `agent_name`); other entries are skipped.

Two hazards no reader can guard against, since pycrdt does not say which kind of content an entry
is; only refusing such items before applying them (`crdtdoc.semantics`) prevents them:

- A string item as a map value reads whole here (yrs) where Yjs shows only its last character.
- A string item that is not ASCII inside a Y.Array makes pycrdt 0.14.13 loop forever on any read
  past it (tests/test_safe_read.py keeps an expected failure for it).
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final

from pycrdt import Array, Map, Text

from crdtdoc.errors import CrdtdocError, ReplicaError
from crdtdoc.roots import INTERNAL_ROOTS
from crdtdoc.textmodel import EMBED, TextView
from crdtdoc.updates import MAX_CLIENT_ID
from crdtdoc.values import JSONValue, restore_number

MAX_READ_DEPTH = 64
"""Nesting (of plain values and shared types together) beyond which a value counts as damaged;
the update parser accepts plain values nested this deep from peers."""

ARTIFACT_KINDS: Final = frozenset({"document", "tasks", "spec", "map"})
"""The kinds `__crdtdoc_artifacts` may record (docs/SCHEMA.md)."""

_ENGINE_ERRORS = (LookupError, ValueError, TypeError, RuntimeError)


class Absent(enum.Enum):
    """Marks a value that is not there, or not readable (a single member, for `is` tests)."""

    ABSENT = 0


ABSENT: Final = Absent.ABSENT


def engine_failed(exc: BaseException) -> bool:
    """Whether `exc` is the engine refusing to read something (not a bug of ours, not a
    KeyboardInterrupt). pycrdt's `PanicException` is a `BaseException`: recognised by name."""
    return isinstance(exc, _ENGINE_ERRORS) or type(exc).__name__ == "PanicException"


# -- raw entries ---------------------------------------------------------------------------


def entries(shared: Map[Any]) -> list[tuple[str, Any]]:
    """`(key, value)` for every entry of `shared` the engine can read, values as pycrdt gives
    them (nested types as pycrdt objects). Raises `CrdtdocError` only when the engine cannot
    even list the keys."""
    try:
        return list(shared.items())  # the common case: every entry reads
    except BaseException as exc:
        if not engine_failed(exc):
            raise
    try:
        keys = list(shared.keys())
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        raise ReplicaError(f"the CRDT engine cannot list a map's keys ({exc})") from None
    out = []
    for key in keys:
        value = entry(shared, key)
        if value is not ABSENT:
            out.append((key, value))
    return out


def entry(shared: Map[Any], key: str) -> Any:
    """The value at `key` as pycrdt gives it, or `ABSENT` when there is none the engine can
    read."""
    try:
        return shared.get(key, ABSENT)
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        return ABSENT


def has(shared: Map[Any], key: str) -> bool:
    """Whether the engine holds an entry at `key` it can remove (readable or not)."""
    try:
        return key in shared
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        return False


def text_of(text: Text) -> str:
    """The characters of a Y.Text (embeds and formatting show none, as in Yjs `toString`)."""
    try:
        return str(text)
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        raise ReplicaError(f"the CRDT engine cannot read the text ({exc})") from None


def _chunks(text: Text) -> list[tuple[Any, dict[str, Any] | None]]:
    """The engine's delta of a Y.Text: (string or embed, formatting) runs."""
    try:
        return text.diff()
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        raise ReplicaError(f"the CRDT engine cannot read the text ({exc})") from None


def text_view(text: Text) -> TextView:
    """A Y.Text as `Document` shows it: its characters, each embed as U+FFFC (crdtdoc.textmodel).

    The common text holds no embed; that is known without the delta, since the engine's length
    counts a UTF-8 byte per character byte and one per embed."""
    chars = text_of(text)
    try:
        length = len(text)
    except BaseException as exc:
        if not engine_failed(exc):
            raise
        raise ReplicaError(f"the CRDT engine cannot read the text ({exc})") from None
    if length == (len(chars) if chars.isascii() else len(chars.encode("utf-8"))):
        return TextView(chars)
    parts: list[str] = []
    embeds: list[int] = []
    at = units = 0
    for insert, _ in _chunks(text):
        if type(insert) is str:
            parts.append(insert)
            at += len(insert)
            units += len(insert.encode("utf-8"))
        else:
            parts.append(EMBED)
            embeds.append(at)
            at += 1
            units += 1
    return TextView("".join(parts), tuple(embeds), False, units == length, length)


def embed_formats(text: Text) -> dict[int, tuple[int, dict[str, Any]]]:
    """Each embed of a Y.Text by its position in `text_view`: its engine offset, and its
    formatting."""
    out: dict[int, tuple[int, dict[str, Any]]] = {}
    at = offset = 0
    for insert, attributes in _chunks(text):
        if type(insert) is str:
            at += len(insert)
            offset += len(insert.encode("utf-8"))
        else:
            out[at] = (offset, dict(attributes or {}))
            at += 1
            offset += 1
    return out


def text_delta(text: Text) -> list[dict[str, JSONValue]]:
    """A Y.Text as Quill-style delta operations, as Yjs `toDelta` gives them: `{"insert": str or
    the embed's JSON view, "attributes": {...}}`, "attributes" only when formatted, and adjacent
    text of equal formatting in one operation (Yjs and pycrdt may each split a run at a format
    item that changes nothing, at different ones). An embed whose value is damaged inserts None;
    a formatting attribute that is damaged is left out."""
    ops: list[dict[str, JSONValue]] = []
    text_before = False  # whether the last op is characters (not an embedded Y.Text's JSON view)
    for insert, attributes in _chunks(text):
        is_text = type(insert) is str
        value = json_value(insert)
        op: dict[str, JSONValue] = {"insert": None if value is ABSENT else value}
        formats = {}
        for key, raw in (attributes or {}).items():
            attr = json_value(raw)
            if attr is not ABSENT and attr is not None and type(key) is str:
                formats[key] = attr
        if formats:
            op["attributes"] = formats
        if is_text and text_before and ops[-1].get("attributes") == op.get("attributes"):
            ops[-1]["insert"] = f"{ops[-1]['insert']}{insert}"
            continue
        ops.append(op)
        text_before = is_text
    return ops


# -- JSON views ----------------------------------------------------------------------------


def json_value(value: Any, _depth: int = 0) -> JSONValue | Absent:
    """The JSON view of a value read from pycrdt, or `ABSENT` when it is damaged (see the
    module docstring)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return restore_number(value) if math.isfinite(value) else ABSENT
    if kind is int:
        return value
    if _depth >= MAX_READ_DEPTH:
        return ABSENT
    if kind is dict:
        obj: dict[str, JSONValue] = {}
        for k, v in value.items():
            item = json_value(v, _depth + 1)
            if item is ABSENT or type(k) is not str:
                return ABSENT
            obj[k] = item
        return obj
    if kind is list:
        items: list[JSONValue] = []
        for v in value:
            item = json_value(v, _depth + 1)
            if item is ABSENT:
                return ABSENT
            items.append(item)
        return items
    if isinstance(value, Map):
        try:
            pairs = entries(value)
        except CrdtdocError:
            return ABSENT
        nested = {}
        for k, v in pairs:
            item = json_value(v, _depth + 1)
            if item is not ABSENT:
                nested[k] = item
        return nested
    if isinstance(value, Array):
        try:
            elements = [v for v in value]  # list() would ask the engine for its length twice
        except BaseException as exc:
            if not engine_failed(exc):
                raise
            return ABSENT
        kept = []
        for v in elements:
            item = json_value(v, _depth + 1)
            if item is not ABSENT:
                kept.append(item)
        return kept
    if isinstance(value, Text):
        try:
            return text_of(value)
        except CrdtdocError:
            return ABSENT
    return ABSENT  # binary data, a subdocument, an XML type, a subclass of a plain type


def json_entries(shared: Map[Any]) -> dict[str, JSONValue]:
    """Every readable entry of `shared` as its JSON view; damaged entries left out."""
    out = {}
    for key, raw in entries(shared):
        value = json_value(raw)
        if value is not ABSENT:
            out[key] = value
    return out


def json_entry(shared: Map[Any], key: str) -> JSONValue | Absent:
    """The JSON view of the entry at `key`, or `ABSENT` when there is none or it is damaged."""
    raw = entry(shared, key)
    return ABSENT if raw is ABSENT else json_value(raw)


# -- shapes --------------------------------------------------------------------------------


def number(value: object) -> float | None:
    """A finite JSON number as a float (bools are not numbers); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
        return result if math.isfinite(result) else None
    return None


def string_list(value: object) -> list[str]:
    """The strings of a JSON array (other elements left out); [] for anything but an array."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def text_field(value: object) -> str:
    """A JSON string, or "" for anything else."""
    return value if isinstance(value, str) else ""


# -- the bookkeeping registries ------------------------------------------------------------


def client_id_of(key: str) -> int | None:
    """The client id an agents-registry key names: decimal ASCII digits, as `str(client id)`
    writes them (no sign, no leading zero, below 2**53); None for any other key."""
    if not (key.isascii() and key.isdigit()) or (len(key) > 1 and key[0] == "0"):
        return None
    client = int(key)
    return client if client < MAX_CLIENT_ID else None


def agent_name(value: object) -> str | None:
    """The agent name an agents-registry value gives: a non-empty str; None for anything else."""
    return value if isinstance(value, str) and value else None


def agent_names(registry: Map[Any]) -> dict[int, str]:
    """client id -> agent name, for the well-formed entries of the agents registry."""
    names: dict[int, str] = {}
    for key, value in entries(registry):
        client = client_id_of(key)
        name = agent_name(value)
        if client is not None and name is not None:
            names[client] = name
    return names


def artifact_kind(name: str, value: object) -> str | None:
    """The kind an artifacts-registry entry records for `name`: a known kind, for a name an
    artifact can have; None for anything else."""
    if not name or name in INTERNAL_ROOTS or not isinstance(value, str):
        return None
    return value if value in ARTIFACT_KINDS else None


def artifact_kinds(registry: Map[Any]) -> dict[str, str]:
    """name -> kind, for the well-formed entries of the artifacts registry."""
    kinds: dict[str, str] = {}
    for name, value in entries(registry):
        kind = artifact_kind(name, value)
        if kind is not None:
            kinds[name] = kind
    return kinds

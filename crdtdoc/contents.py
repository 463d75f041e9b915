"""The content of a Yjs struct (the part after its ids, origins and parent), read from the
bytes alone: strings counted in UTF-16 units as Yjs counts clocks, JSON and lib0 `Any` values
nested at most `MAX_ANY_DEPTH` deep, embeds, formats, types and subdocuments. `read_content` only
ever raises the decoder's typed error (`InvalidUpdate` in `crdtdoc.updates`). Compiled with the
rest of the hot path (`crdtdoc.hotpath`)."""

from __future__ import annotations

import json
from typing import Any, Final

from crdtdoc.encoding import Decoder

MAX_ANY_DEPTH: Final = 64
"""How deeply `Any` values (and embedded JSON) may nest; deeper nesting crashes yrs."""

# Content refs (the low five bits of a struct's info byte).
GC: Final = 0
DELETED: Final = 1
JSON: Final = 2
BINARY: Final = 3
STRING: Final = 4
EMBED: Final = 5
FORMAT: Final = 6
TYPE: Final = 7
ANY: Final = 8
DOC: Final = 9
SKIP: Final = 10
CONTENT_NAMES: Final = {
    GC: "gc",
    DELETED: "deleted",
    JSON: "json",
    BINARY: "binary",
    STRING: "string",
    EMBED: "embed",
    FORMAT: "format",
    TYPE: "type",
    ANY: "any",
    DOC: "doc",
    SKIP: "skip",
}
TYPE_NAMES: Final = ("Array", "Map", "Text", "XmlElement", "XmlFragment", "XmlHook", "XmlText")
_XML_ELEMENT: Final = 3
_XML_HOOK: Final = 5


# every byte but F0-F4, the leads of four-byte sequences: deleted, what is left counts them
_NOT_FOUR_BYTE_LEADS: Final = bytes(b for b in range(256) if not 0xF0 <= b <= 0xF4)


def _utf16_length(s: str, raw: bytes) -> int:
    """Yjs counts string clocks in UTF-16 units: one per code point, two beyond U+FFFF.

    In valid UTF-8 exactly the code points beyond U+FFFF take four bytes, led by F0-F4: one
    pass deleting every other byte counts them (a count per lead byte took five passes).
    """
    if len(raw) == len(s):  # ASCII
        return len(s)
    return len(s) + len(raw.translate(None, _NOT_FOUR_BYTE_LEADS))


def read_content(dec: Decoder, ref: int) -> tuple[int, Any]:
    """Reads an item's content; returns (clock length, value)."""
    if ref == STRING:
        raw = dec.read_var_bytes()
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise dec.fail(f"invalid UTF-8 in string ({exc.reason})") from None
        return _utf16_length(s, raw), s
    if ref == ANY:
        n = dec.read_count("any value", 1)
        return n, [_read_any(dec, 0) for _ in range(n)]
    if ref == DELETED:
        return dec.read_var_uint(), None
    if ref == TYPE:
        type_ref = dec.read_var_uint()
        if type_ref >= len(TYPE_NAMES):
            raise dec.fail(f"unknown type ref {type_ref} (known: 0-{len(TYPE_NAMES) - 1})")
        name = TYPE_NAMES[type_ref]
        if type_ref == _XML_HOOK:
            # yrs re-encodes a hook without its name, so no Yjs client could read it back.
            raise dec.fail("XmlHook types are not supported (yrs drops their hook name)")
        if type_ref == _XML_ELEMENT:
            dec.read_var_string()  # node name
        return 1, name
    if ref == JSON:
        # Legacy content (Yjs writes `any` instead since 13.0); yrs fails mid-apply to decode it
        # as Yjs encodes it, so no engine could share it.
        raise dec.fail("legacy JSON content (ref 2) is not supported: write it as `any` content")
    if ref == BINARY:
        return 1, dec.read_var_bytes()
    if ref == EMBED:
        return 1, _parse_json(dec, dec.read_var_string())
    if ref == FORMAT:
        key = dec.read_var_string()
        return 1, (key, _parse_json(dec, dec.read_var_string()))
    if ref == DOC:
        guid = dec.read_var_string()
        options = _read_any(dec, 0)
        if isinstance(options, dict) and options.get("meta") is not None:
            # yrs drops a subdocument's meta option: others would read the subdocument without.
            raise dec.fail("a subdocument's meta option is not supported (yrs drops it)")
        return 1, guid
    raise dec.fail(f"unknown content ref {ref}")


def _parse_json(dec: Decoder, text: str) -> Any:
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_ANY_DEPTH:
                raise dec.fail(f"JSON content nested deeper than {MAX_ANY_DEPTH}")
        elif ch in "]}":
            depth -= 1
    try:
        value = json.loads(text, parse_constant=no_json_constant)
    except (ValueError, RecursionError) as exc:
        raise dec.fail(f"invalid JSON content: {exc}") from None
    if not json_safe(value):
        # yrs refuses these mid-apply: numbers beyond a double, lone surrogates in strings.
        raise dec.fail("JSON content with an infinite number or a lone surrogate")
    return value


def no_json_constant(name: str) -> Any:
    """`json.loads`'s `parse_constant`: NaN and Infinity are not JSON (JavaScript refuses
    them)."""
    raise ValueError(f"{name} is not JSON")


def json_safe(value: Any) -> bool:
    """No infinite float and no lone surrogate anywhere in a parsed JSON value (iterative):
    what every engine and every reader can hold and print."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, float):
            if current != current or current in (float("inf"), float("-inf")):
                return False
        elif isinstance(current, str):
            if not current.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in current):
                return False
        elif isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
    return True


def _read_any(dec: Decoder, depth: int) -> Any:
    """Reads one lib0 `Any` value, nesting at most MAX_ANY_DEPTH deep."""
    tag = dec.read_u8()
    if tag == 119:
        return dec.read_var_string()
    if tag == 125:
        return dec.read_var_int()
    if tag == 123:
        return dec.read_f64()
    if tag == 124:
        return dec.read_f32()
    if tag == 126 or tag == 127:
        return None
    if tag == 120:
        return True
    if tag == 121:
        return False
    if tag == 118 or tag == 117:
        if depth >= MAX_ANY_DEPTH:
            raise dec.fail(f"Any value nested deeper than {MAX_ANY_DEPTH}")
        if tag == 117:
            n = dec.read_count("array element", 1)
            return [_read_any(dec, depth + 1) for _ in range(n)]
        n = dec.read_count("object entry", 2)
        obj = {}
        for _ in range(n):
            key = dec.read_var_string()
            obj[key] = _read_any(dec, depth + 1)
        return obj
    if tag == 122:
        # A JavaScript BigInt: yrs keeps it as a float, so clients that sync from a pycrdt
        # replica would read another value than the writer's.
        raise dec.fail("BigInt values (lib0 type 122) are not supported: yrs reads them as floats")
    if tag == 116:
        return dec.read_var_bytes()
    raise dec.fail(f"unknown Any type tag {tag}")

"""JSON-like values in and out of Yjs, with integers kept as integers.

Yjs stores numbers as JavaScript numbers, and pycrdt hands every number back as a float. Values
written through crdtdoc are checked on the way in (ints must fit in 53 bits so every Yjs client
reads them exactly) and restored on the way out: an integral float becomes an int. So `2.0` reads
back as `2`, the price of agreeing with JavaScript, where the two are the same number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from crdtdoc.errors import InvalidValue

MAX_SAFE_INTEGER = 2**53 - 1
MAX_VALUE_DEPTH = 32
"""How deeply values written through crdtdoc may nest (the parser accepts up to 64 from peers)."""

JSONValue = Any


def check_text(text: str, what: str = "text") -> str:
    """`text`, if a Yjs document can hold it; raises `InvalidValue` if it holds a lone UTF-16
    surrogate (half of a character, as `"\\udc80"` or a file decoded with `surrogateescape`):
    no Yjs encoding can carry one, and pycrdt panics on it, possibly halfway through an edit.
    Every str crdtdoc writes passes here first, so an edit fails before it changes anything."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValue(
                f"{what} holds a lone surrogate ({text[exc.start]!r} at index {exc.start}), "
                "half of a character that no Yjs document can store; nothing was changed"
            ) from None
    return text


def to_yjs(value: JSONValue, _depth: int = 0) -> JSONValue:
    """Checks `value` is JSON-like and returns it in the form pycrdt stores."""
    if _depth > MAX_VALUE_DEPTH:
        raise InvalidValue(f"value nests deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, str):
        return check_text(value, "a string value")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidValue(
                f"integer {value} is beyond 2**53-1, which Yjs clients cannot read exactly; "
                "store it as a string"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(f"{value} is not a JSON number; use None or a string")
        return value
    if isinstance(value, (list, tuple)):
        return [to_yjs(v, _depth + 1) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidValue(f"object keys must be str, got {type(k).__name__} {k!r}")
            out[check_text(k, "an object key")] = to_yjs(v, _depth + 1)
        return out
    raise InvalidValue(
        f"{type(value).__name__} is not JSON-like; use str, int, float, bool, None, list or dict"
    )


def restore_number(value: float) -> int | float:
    """A number read from pycrdt as it was written: an integral float within 2**53 is an int."""
    if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    return value


def from_yjs(value: JSONValue) -> JSONValue:
    """Restores a value read from pycrdt: integral floats become ints, containers are copied.
    (Readers of shared artifacts use `crdtdoc.safe_read.json_value`, which also refuses what is
    not JSON.)"""
    if isinstance(value, float):
        return restore_number(value)
    if isinstance(value, list):
        return [from_yjs(v) for v in value]
    if isinstance(value, dict):
        return {k: from_yjs(v) for k, v in value.items()}
    return value

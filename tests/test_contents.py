"""A struct's content read from its bytes (`crdtdoc.contents`): strings counted in UTF-16 units as
Yjs counts clocks, lib0 `Any` values, embeds, formats, types and subdocuments, with every bound
and refusal raised as the decoder's typed error and nothing else, whatever the bytes."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc.contents import (
    ANY,
    BINARY,
    DELETED,
    DOC,
    EMBED,
    FORMAT,
    JSON,
    MAX_ANY_DEPTH,
    STRING,
    TYPE,
    TYPE_NAMES,
    _utf16_length,
    read_content,
)
from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import InvalidUpdate


def _read(ref: int, *write: tuple[str, object]) -> tuple[int, object]:
    enc = Encoder()
    for kind, value in write:
        getattr(enc, f"write_{kind}")(value)
    return read_content(Decoder(enc.to_bytes(), InvalidUpdate), ref)


@given(st.text(max_size=40))
def test_string_clock_length_is_the_utf16_length(s: str) -> None:
    raw = s.encode("utf-8", "surrogatepass")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        return  # lone surrogates are not valid UTF-8; the parser refuses them
    assert _utf16_length(s, raw) == len(s.encode("utf-16-le")) // 2


def test_each_kind_reads_its_length_and_value() -> None:
    assert _read(STRING, ("var_string", "a😀b")) == (4, "a😀b")  # the emoji takes two clocks
    assert _read(DELETED, ("var_uint", 7)) == (7, None)
    assert _read(BINARY, ("var_bytes", b"\x00\x01")) == (1, b"\x00\x01")
    assert _read(EMBED, ("var_string", '{"image": "x.png"}')) == (1, {"image": "x.png"})
    assert _read(FORMAT, ("var_string", "bold"), ("var_string", "true")) == (1, ("bold", True))
    assert _read(TYPE, ("var_uint", TYPE_NAMES.index("Text"))) == (1, "Text")
    any_values = ("var_uint", 2), ("u8", 119), ("var_string", "hi"), ("u8", 120)  # "hi", true
    assert _read(ANY, *any_values) == (2, ["hi", True])


@pytest.mark.parametrize(
    ("ref", "write", "says"),
    [
        (STRING, [("var_bytes", b"\xff\xfe")], "invalid UTF-8"),
        (TYPE, [("var_uint", 99)], "unknown type ref 99"),
        (TYPE, [("var_uint", TYPE_NAMES.index("XmlHook"))], "XmlHook"),
        (JSON, [("var_uint", 1)], "legacy JSON content"),
        (EMBED, [("var_string", "[" * (MAX_ANY_DEPTH + 1))], f"deeper than {MAX_ANY_DEPTH}"),
        (EMBED, [("var_string", "NaN")], "JSON"),
        (ANY, [("var_uint", 1), ("u8", 122)], "BigInt"),
        (
            DOC,
            [
                ("var_string", "guid"),
                ("u8", 118),
                ("var_uint", 1),
                ("var_string", "meta"),
                ("u8", 119),
                ("var_string", "x"),
            ],
            "meta option",
        ),
        (42, [], "unknown content ref 42"),
    ],
)
def test_what_the_engines_disagree_on_is_refused_by_name(
    ref: int, write: list[tuple[str, object]], says: str
) -> None:
    with pytest.raises(InvalidUpdate, match=says):
        _read(ref, *write)


def test_any_values_nest_no_deeper_than_the_bound() -> None:
    def nested(depth: int) -> list[tuple[str, object]]:
        return [("var_uint", 1), *[("u8", 117), ("var_uint", 1)] * depth, ("u8", 126)]

    _read(ANY, *nested(MAX_ANY_DEPTH - 1))  # arrays of arrays down to an undefined: fine
    with pytest.raises(InvalidUpdate, match="deep"):
        _read(ANY, *nested(MAX_ANY_DEPTH + 1))


@given(st.integers(0, 12), st.binary(max_size=64))
def test_any_bytes_read_or_are_refused_with_the_typed_error(ref: int, data: bytes) -> None:
    with contextlib.suppress(InvalidUpdate):  # and nothing else: no KeyError, no Unicode error
        read_content(Decoder(data, InvalidUpdate), ref)


def test_embedded_json_reads_as_json_does() -> None:
    value = {"a": [1, 2.5, None, "x"], "b": {"c": False}}
    assert _read(EMBED, ("var_string", json.dumps(value))) == (1, value)

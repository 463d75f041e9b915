"""The update parser: accepts all pycrdt writes; refuses all else with InvalidUpdate."""

from __future__ import annotations

import contextlib
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, merge_updates

from crdtdoc.contents import MAX_ANY_DEPTH
from crdtdoc.encoding import Encoder, encode_var_uint
from crdtdoc.errors import InvalidUpdate
from crdtdoc.idset import IdSet
from crdtdoc.updates import (
    ParsedUpdate,
    advance,
    decode_state_vector,
    encode_state_vector,
    parse_update,
)
from tests.support.builders import writer_stream


def _pycrdt_updates(seed: int) -> tuple[Doc, list[bytes]]:
    """A pycrdt doc edited at random (text, maps, arrays, nested types, deletes), its updates."""
    rng = random.Random(seed)
    doc: Doc = Doc(client_id=rng.randrange(2**32))
    updates: list[bytes] = []
    doc.observe(lambda e: updates.append(e.update))
    text = doc.get("t", type=Text)
    m = doc.get("m", type=Map)
    arr = doc.get("a", type=Array)
    for _ in range(30):
        roll = rng.random()
        if roll < 0.3:
            text.insert(len(str(text).encode()), rng.choice(["a", "é", "😀", "xyz", "中"]))
        elif roll < 0.4 and len(str(text)):
            del text[0 : len(str(text)[0].encode())]
        elif roll < 0.6:
            m[rng.choice("abc")] = rng.choice([1, 2.5, "s", None, True, [1, {"x": [2]}], b"bin"])
        elif roll < 0.7:
            m["nested"] = Map({"k": Text("inner")})
        elif roll < 0.8 and "nested" in m:
            del m["nested"]
        elif roll < 0.9:
            arr.append(rng.choice([1, "x", {"o": 1}]))
        elif len(arr):
            del arr[0]
    return doc, updates


@pytest.mark.parametrize("seed", range(25))
def test_parses_every_update_pycrdt_writes_and_ranges_match_state(seed: int) -> None:
    doc, updates = _pycrdt_updates(seed)
    for update in updates:
        parse_update(update, details=True)
    full = parse_update(doc.get_update())
    assert {c: s.end for c, s in full.structs.items()} == decode_state_vector(doc.get_state())
    assert all(s.start == 0 for s in full.structs.values())
    # Incremental updates tile the clock space without gaps.
    clock = 0
    for update in updates:
        ranges = parse_update(update).clock_ranges()
        if ranges:
            ((start, end),) = ranges.values()
            assert start == clock
            clock = end
    assert clock == full.structs[doc.client_id].end


def test_string_lengths_count_utf16_units_like_yjs() -> None:
    doc: Doc = Doc(client_id=7)
    doc.get("t", type=Text).insert(0, "a😀é中")
    parsed = parse_update(doc.get_update())
    assert parsed.clock_ranges() == {7: (0, 5)}  # 😀 is two UTF-16 units
    assert decode_state_vector(doc.get_state()) == {7: 5}


def test_dependencies_and_delete_set_are_reported() -> None:
    a: Doc = Doc(client_id=1)
    text = a.get("t", type=Text)
    text.insert(0, "hello")
    b: Doc = Doc(client_id=2)
    b.apply_update(a.get_update())
    seen: list[bytes] = []
    b.observe(lambda e: seen.append(e.update))
    with b.transaction():
        b.get("t", type=Text).insert(2, "XY")
        del b.get("t", type=Text)[0:1]
    parsed = parse_update(seen[-1])
    assert parsed.clock_ranges() == {2: (0, 2)}
    assert parsed.references == {1: 3}  # origin 1:1 ('e'), right origin 1:2 ('l')
    assert parsed.delete_set.ranges == {1: [(0, 1)]}
    assert parsed.missing({}).ranges == {1: [(0, 3)]}
    assert not parsed.missing({1: 5})


def test_gc_and_skip_structs_are_understood() -> None:
    doc: Doc = Doc(client_id=3)
    m = doc.get("m", type=Map)
    m["n"] = Map({"q": "zz"})
    del m["n"]
    assert parse_update(doc.get_update()).structs[3].gcs == [(1, 2)]
    writer: Doc = Doc(client_id=4)
    log: list[bytes] = []
    writer.observe(lambda e: log.append(e.update))
    t = writer.get("t", type=Text)
    for s in ("ab", "cd", "ef"):
        t += s
    merged = parse_update(merge_updates(log[0], log[2]))
    assert merged.structs[4].skips == [(2, 4)]
    assert merged.missing({4: 0}).ranges == {4: [(2, 4)]}
    assert not merged.missing({4: 4})


# -- refusals, one per rule ---------------------------------------------------------------


def _update(client: int, clock: int, *structs: bytes, ds: bytes = b"\x00") -> bytes:
    enc = Encoder()
    enc.write_var_uint(1)
    enc.write_var_uint(len(structs))
    enc.write_var_uint(client)
    enc.write_var_uint(clock)
    for s in structs:
        enc.write_bytes(s)
    enc.write_bytes(ds)
    return enc.to_bytes()


def _string_item(s: bytes) -> bytes:
    enc = Encoder()
    enc.write_u8(4)  # ContentString, no origins
    enc.write_var_uint(1)
    enc.write_var_string("t")
    enc.write_var_bytes(s)
    return enc.to_bytes()


def _any_item(payload: bytes, count: int = 1) -> bytes:
    enc = Encoder()
    enc.write_u8(8)
    enc.write_var_uint(1)
    enc.write_var_string("a")
    enc.write_var_uint(count)
    enc.write_bytes(payload)
    return enc.to_bytes()


def _gc_struct(length: int) -> bytes:
    """A GC struct (info byte 0) covering `length` clocks."""
    return b"\x00" + encode_var_uint(length)


def _nested_any(depth: int) -> bytes:
    return b"\x75\x01" * depth + b"\x7e"  # arrays of one element, innermost null


REFUSALS = {
    "empty update": (b"", "empty update"),
    "truncated": (_update(1, 0, _string_item(b"hi"))[:-3], "truncated|past the end"),
    "trailing bytes": (_update(1, 0, _string_item(b"hi")) + b"\x00", "trailing bytes"),
    "varint over 10 bytes": (b"\x01\x01" + b"\xff" * 11, "longer than 10 bytes"),
    "length past the end": (_update(1, 0, b"\x04\x01\x01t\x7fab"), "past the end"),
    "unknown content ref": (_update(1, 0, b"\x0b\x01\x01t"), "unknown content ref 11"),
    "unknown type ref": (_update(1, 0, b"\x07\x01\x01t\x09"), "unknown type ref 9"),
    "unknown any tag": (_update(1, 0, _any_item(b"\x10")), "unknown Any type tag"),
    "clock at 2^32": (_update(1, 2**32, _string_item(b"x")), "clock 4294967296"),
    "clock plus length at 2^32": (_update(1, 2**32 - 1, _string_item(b"x")), "reaches 2\\^32"),
    "client id at 2^53": (_update(2**53, 0, _string_item(b"x")), "not below 2\\^53"),
}


def _origin_item(client: int, clock: int) -> bytes:
    enc = Encoder()
    enc.write_u8(0x84)
    enc.write_var_uint(client)
    enc.write_var_uint(clock)
    enc.write_var_string("x")
    return enc.to_bytes()


REFUSALS.update(
    {
        "origin client id at 2^53": (_update(1, 0, _origin_item(2**53, 0)), "not below 2\\^53"),
        "origin clock at 2^32": (_update(1, 0, _origin_item(5, 2**32)), "not below 2\\^32"),
        "deleted range reaching 2^32": (
            _update(1, 0, _string_item(b"x"), ds=b"\x01\x01\x01\xff\xff\xff\xff\x0f\x01"),
            "reaches 2\\^32",
        ),
        "invalid utf-8": (_update(1, 0, _string_item(b"\xc3\x28")), "invalid UTF-8"),
        "any nested too deep": (
            _update(1, 0, _any_item(_nested_any(MAX_ANY_DEPTH + 1))),
            "nested deeper than 64",
        ),
        "embed nested too deep": (
            _update(1, 0, b"\x05\x01\x01a" + bytes([130, 1]) + b"[" * 130),
            "nested deeper than 64",
        ),
        "xml hook": (_update(1, 0, b"\x07\x01\x01m\x05\x01h"), "XmlHook types are not supported"),
        "own later id as origin": (
            _update(1, 0, b"\x84\x01\x01" + b"\x01x"),
            "refers to its own client's later id",
        ),
        "NaN in an embed": (_update(1, 0, b"\x05\x01\x01t\x03NaN"), "NaN is not JSON"),
        "an infinite number in an embed": (
            _update(1, 0, b"\x05\x01\x01t\x051e400"),
            "infinite number or a lone surrogate",
        ),
        "a lone surrogate in an embed": (
            _update(1, 0, b'\x05\x01\x01t\x08"\\ud800"'),
            "infinite number or a lone surrogate",
        ),
        "a BigInt value": (_update(1, 0, b"\x08\x01\x01m\x01" + b"\x7a" + bytes(8)), "BigInt"),
        "a subdocument's meta option": (
            _update(1, 0, b"\x09\x01\x01m\x01g" + b"\x76\x01\x04meta\x77\x01x"),
            "meta option",
        ),
        "legacy json content": (
            _update(1, 0, b"\x02\x01\x01a\x01\x01" + b"1"),
            "legacy JSON content",
        ),
        "invalid json": (_update(1, 0, b"\x05\x01\x01t\x03{x}"), "invalid JSON"),
        "count the bytes cannot hold": (b"\xff\xff\xff\x7f\x00", "count .* needs"),
        "any count the bytes cannot hold": (
            _update(1, 0, _any_item(b"\x7e", count=10**6)),
            "count 1000000 needs",
        ),
        "zero-length struct": (_update(1, 0, _string_item(b"")), "zero-length"),
        "gc with flag bits": (_update(1, 0, b"\x80\x01"), "flag bits"),
        "bad parent info": (_update(1, 0, b"\x04\x02\x01t"), "parent info 2"),
        "client twice": (
            b"\x02"
            + _update(1, 0, _string_item(b"x"))[1:-1]
            + _update(1, 1, _string_item(b"y"))[1:],
            "two struct sections",
        ),
        "not bytes": ("text", "must be bytes"),
    }
)


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refuses_with_a_message_saying_what_is_wrong(name: str) -> None:
    data, pattern = REFUSALS[name]
    with pytest.raises(InvalidUpdate, match=pattern):
        parse_update(data)  # type: ignore[arg-type]


def test_any_nested_at_the_limit_is_accepted() -> None:
    parse_update(_update(1, 0, _any_item(_nested_any(MAX_ANY_DEPTH))))


def test_very_deep_nesting_is_refused_without_recursing() -> None:
    # ~26k deep segfaults yrs; the parser must refuse it at depth 65 and survive.
    with pytest.raises(InvalidUpdate, match="nested deeper"):
        parse_update(_update(1, 0, _any_item(_nested_any(30_000))))


# -- never anything but InvalidUpdate -------------------------------------------------------


def _parse_or_invalid(data: bytes) -> None:
    with contextlib.suppress(InvalidUpdate):
        parse_update(data, details=True)


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_invalid_update(data: bytes) -> None:
    _parse_or_invalid(data)


REAL_UPDATES = [u for seed in range(4) for u in writer_stream(seed, steps=25)] + [
    _pycrdt_updates(seed)[0].get_update() for seed in range(3)
]


@settings(max_examples=1000)
@given(
    st.sampled_from(REAL_UPDATES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_real_updates_only_ever_raise_invalid_update(
    update: bytes, mutations: list[tuple[int, int]]
) -> None:
    data = bytearray(update)
    for pos, value in mutations:
        data[pos % len(data)] = value
    _parse_or_invalid(bytes(data))


@settings(max_examples=1000)
@given(st.sampled_from(REAL_UPDATES), st.integers(0, 10**6), st.binary(min_size=1, max_size=8))
def test_spliced_real_updates_only_ever_raise_invalid_update(
    update: bytes, pos: int, insert: bytes
) -> None:
    pos %= len(update)
    _parse_or_invalid(update[:pos] + insert + update[pos:])
    _parse_or_invalid(update[:pos] + update[pos + len(insert) :])


@pytest.mark.parametrize("index", range(0, len(REAL_UPDATES), 7))
def test_every_truncation_of_a_real_update_is_refused(index: int) -> None:
    update = REAL_UPDATES[index]
    parse_update(update)
    for cut in range(len(update)):
        with pytest.raises(InvalidUpdate):
            parse_update(update[:cut])


def test_memory_stays_a_small_multiple_of_the_input() -> None:
    hostile = [
        b"\xff\xff\xff\xff\x0f" + b"\x00" * 1000,  # huge client count
        _update(1, 0, _any_item(b"\x75\xff\xff\xff\x0f" + b"\x7e" * 1000)),  # huge array count
        _update(1, 0, b"\x01\x01\x01t\xff\xff\xff\x0f"),  # deleted content of 2^32 - 1
        _update(1, 0, _string_item(b"x"), ds=b"\x01\x01\xff\xff\xff\x0f" + b"\x00" * 1000),
    ]
    for data in hostile:
        tracemalloc.start()
        _parse_or_invalid(data)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 64 * len(data) + 16_384, (data[:16], peak)


def test_state_vector_round_trip_and_refusals() -> None:
    state = {1: 5, 2**40: 7}
    assert decode_state_vector(encode_state_vector(state)) == state
    with pytest.raises(InvalidUpdate, match="trailing"):
        decode_state_vector(encode_state_vector(state) + b"\x00")
    with pytest.raises(InvalidUpdate):
        decode_state_vector(b"\x05\x01")


@pytest.mark.parametrize("seed", range(5))
def test_advancing_a_state_past_each_update_gives_the_engines_state(seed: int) -> None:
    """`advance` and `clocks_before`, as the replica uses them for each remote update: from the
    state before it to the engine's own state after it, and True only for an update that
    re-sent ids the state had."""
    _, updates = _pycrdt_updates(seed)
    doc: Doc = Doc()
    state: dict[int, int] = {}
    for u in updates:
        parsed = parse_update(u)
        before = parsed.clocks_before(state)
        assert before == {c: state.get(c, 0) for c in parsed.structs}
        assert advance(state, parsed.structs) is False
        doc.apply_update(u)
        assert state == decode_state_vector(doc.get_state())
    if updates:
        assert advance(state, parse_update(updates[-1]).structs) == bool(
            parse_update(updates[-1]).structs
        )


def _missing_by_definition(parsed: ParsedUpdate, state: dict[int, int]) -> IdSet:
    """What `ParsedUpdate.missing` answers, written the plain way: against a copy of the state
    advanced by the structs that can apply."""
    missing = IdSet()
    after = dict(state)
    for client, s in parsed.structs.items():
        have = state.get(client, 0)
        if s.start > have:
            missing.add(client, have, s.start)
            continue
        for skip_start, skip_end in s.skips:
            if skip_end > have:
                missing.add(client, max(have, skip_start), skip_end)
        after[client] = max(have, s.end)
    for client, needed in parsed.references.items():
        own = parsed.structs.get(client)
        start = after.get(client, 0)
        if own is not None and own.start > state.get(client, 0):
            start = own.end  # the gap before them is reported above
        if needed > start:
            missing.add(client, start, needed)
    return missing


@given(st.integers(0, 2**16), st.lists(st.integers(0, 40), min_size=6, max_size=6))
@settings(max_examples=60)
def test_what_an_update_waits_for_is_what_its_structs_and_references_lack(
    seed: int, clocks: list[int]
) -> None:
    updates = writer_stream(seed % 50, writers=3, steps=12)
    merged = merge_updates(*updates[seed % 5 :: 3]) if len(updates) > 5 else updates[0]
    parsed = parse_update(merged)
    clients = sorted({c for c in parsed.structs} | set(parsed.references))
    state = {c: clocks[i % 6] for i, c in enumerate(clients)}
    assert parsed.missing(state) == _missing_by_definition(parsed, state)

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import InvalidValue, Replica
from crdtdoc.values import MAX_SAFE_INTEGER, from_yjs, to_yjs

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_values_survive_a_trip_through_yjs_exactly(value: object) -> None:
    a = Replica("a")
    a.map("m").set("v", value)
    b = Replica("b")
    b.apply_update(a.encode_update())
    got = b.map("m").get("v")
    assert _same(got, value)


def _same(a: object, b: object) -> bool:
    """Equal, with the same types all the way down (so 1 and 1.0 differ; key order does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize(
    "bad",
    [2**53, -(2**53), math.nan, math.inf, {1: "x"}, object(), b"bytes", {"k": {1, 2}}],
)
def test_values_yjs_cannot_hold_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValue):
        to_yjs(bad)


def test_deep_values_are_refused() -> None:
    v: object = 1
    for _ in range(40):
        v = [v]
    with pytest.raises(InvalidValue, match="deeper"):
        to_yjs(v)


def test_integral_floats_read_back_as_ints() -> None:
    assert from_yjs(2.0) == 2 and type(from_yjs(2.0)) is int
    assert type(from_yjs(2.5)) is float

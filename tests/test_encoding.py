from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc.encoding import MAX_VARINT_BYTES, Decoder, Encoder
from crdtdoc.errors import InvalidMessage, InvalidUpdate


@given(st.integers(min_value=0, max_value=2**64))
def test_var_uint_round_trips(n: int) -> None:
    enc = Encoder()
    enc.write_var_uint(n)
    dec = Decoder(enc.to_bytes())
    assert dec.read_var_uint() == n
    assert dec.at_end()


@given(st.integers(min_value=-(2**60), max_value=2**60))
def test_var_int_round_trips(n: int) -> None:
    enc = Encoder()
    enc.write_var_int(n)
    assert Decoder(enc.to_bytes()).read_var_int() == n


def test_var_int_matches_lib0_bytes() -> None:
    # lib0: first byte holds continuation (0x80), sign (0x40) and six bits.
    enc = Encoder()
    enc.write_var_int(-1)
    enc.write_var_int(64)
    assert enc.to_bytes() == bytes([0x41, 0x80, 0x01])


def test_var_uint_longer_than_limit_is_refused() -> None:
    with pytest.raises(InvalidUpdate, match="longer than 10 bytes"):
        Decoder(b"\xff" * MAX_VARINT_BYTES + b"\x01").read_var_uint()


def test_truncated_reads_raise_the_decoders_error_class() -> None:
    with pytest.raises(InvalidMessage, match="truncated"):
        Decoder(b"\x80", InvalidMessage).read_var_uint()
    with pytest.raises(InvalidUpdate, match="runs past the end"):
        Decoder(b"\x05ab").read_var_bytes()
    with pytest.raises(InvalidUpdate, match="truncated"):
        Decoder(b"").read_u8()


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(InvalidUpdate, match="invalid UTF-8"):
        Decoder(b"\x02\xc3\x28").read_var_string()
    # An encoded surrogate (CESU-8) is not UTF-8 either.
    with pytest.raises(InvalidUpdate, match="invalid UTF-8"):
        Decoder(b"\x03\xed\xa0\x80").read_var_string()


def test_declared_count_beyond_remaining_bytes_is_refused() -> None:
    with pytest.raises(InvalidUpdate, match="count 1000 needs"):
        Decoder(b"\xe8\x07abc").read_count("element")

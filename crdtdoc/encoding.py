"""lib0 binary encoding (the byte layer under Yjs and y-protocols), bounds-checked.

`Decoder` never reads past its buffer and never raises anything but the error class it was given,
so each parser built on it fails with its own typed error. Nothing here allocates more than the
bytes it was handed.
"""

from __future__ import annotations

import struct
from typing import Final

from crdtdoc.errors import CrdtdocError, InvalidUpdate

MAX_VARINT_BYTES: Final = 10
"""A lib0 varint longer than this is refused (10 bytes already hold 70 bits)."""

_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


class Decoder:
    """Reads lib0 values from `data`, raising `error` (a `CrdtdocError` subclass) on bad input."""

    __slots__ = ("data", "end", "error", "pos")

    def __init__(self, data: bytes, error: type[CrdtdocError] = InvalidUpdate) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.end = len(self.data)
        self.error = error

    def fail(self, what: str) -> CrdtdocError:
        """The error to raise for `what` at the current position."""
        return self.error(f"{what} (at byte {self.pos} of {self.end})")

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def read_u8(self) -> int:
        if self.pos >= self.end:
            raise self.fail("truncated: expected one more byte")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def read_var_uint(self) -> int:
        pos = self.pos
        if pos < self.end:
            b = self.data[pos]
            if b < 0x80:  # one byte: the common case
                self.pos = pos + 1
                return b
        return self._read_long_var_uint()

    def _read_long_var_uint(self) -> int:
        data, pos, end = self.data, self.pos, self.end
        value = 0
        shift = 0
        for _i in range(MAX_VARINT_BYTES):
            if pos >= end:
                self.pos = pos
                raise self.fail("truncated varint")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return value
            shift += 7
        self.pos = pos
        raise self.fail(f"varint longer than {MAX_VARINT_BYTES} bytes")

    def read_var_int(self) -> int:
        """lib0 signed varint: first byte carries continuation, sign and 6 value bits."""
        first = self.read_u8()
        negative = bool(first & 0x40)
        value = first & 0x3F
        shift = 6
        b = first
        count = 1
        while b & 0x80:
            if count >= MAX_VARINT_BYTES:
                raise self.fail(f"varint longer than {MAX_VARINT_BYTES} bytes")
            b = self.read_u8()
            count += 1
            value |= (b & 0x7F) << shift
            shift += 7
        return -value if negative else value

    def read_bytes(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise self.fail(f"length {n} runs past the end ({self.end - self.pos} bytes left)")
        start = self.pos
        self.pos += n
        return self.data[start : self.pos]

    def read_var_bytes(self) -> bytes:
        return self.read_bytes(self.read_var_uint())

    def read_var_string(self) -> str:
        raw = self.read_var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"invalid UTF-8 in string ({exc.reason})") from None

    def skip_var_string(self) -> None:
        """Validates a string without keeping it (UTF-8 is still checked)."""
        self.read_var_string()

    def read_f32(self) -> float:
        return float(_F32.unpack(self.read_bytes(4))[0])

    def read_f64(self) -> float:
        return float(_F64.unpack(self.read_bytes(8))[0])

    def read_count(self, what: str, min_bytes_each: int = 1) -> int:
        """A declared element count, refused when the remaining bytes cannot hold that many."""
        n = self.read_var_uint()
        if n * min_bytes_each > self.end - self.pos:
            raise self.fail(
                f"{what} count {n} needs at least {n * min_bytes_each} bytes, "
                f"only {self.end - self.pos} left"
            )
        return n


class Encoder:
    """Writes lib0 values into a growing buffer."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def write_u8(self, b: int) -> None:
        self.buf.append(b)

    def write_var_uint(self, n: int) -> None:
        if n < 0:
            raise ValueError("varuint must be non-negative")
        buf = self.buf
        while n > 0x7F:
            buf.append(0x80 | (n & 0x7F))
            n >>= 7
        buf.append(n)

    def write_var_int(self, n: int) -> None:
        negative = n < 0
        n = -n if negative else n
        first = (n & 0x3F) | (0x40 if negative else 0)
        n >>= 6
        if n:
            first |= 0x80
        self.buf.append(first)
        while n:
            b = n & 0x7F
            n >>= 7
            self.buf.append(b | (0x80 if n else 0))

    def write_bytes(self, data: bytes) -> None:
        self.buf += data

    def write_var_bytes(self, data: bytes) -> None:
        self.write_var_uint(len(data))
        self.buf += data

    def write_var_string(self, s: str) -> None:
        self.write_var_bytes(s.encode("utf-8"))

    def write_f64(self, x: float) -> None:
        self.buf += _F64.pack(x)

    def to_bytes(self) -> bytes:
        return bytes(self.buf)


def encode_var_uint(n: int) -> bytes:
    """One varuint as bytes."""
    enc = Encoder()
    enc.write_var_uint(n)
    return enc.to_bytes()

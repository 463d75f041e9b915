"""`Version`: what a replica has seen, as a state vector plus a delete set (a Yjs snapshot).

The state vector alone does not move when something is deleted, so two replicas could report the
same vector with different content. With the delete set beside it, `a <= b` holds exactly when
every insertion and every deletion `a` has seen, `b` has seen too.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping

from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import InvalidVersionToken
from crdtdoc.idset import IdSet
from crdtdoc.updates import MAX_CLIENT_ID, MAX_CLOCK, read_state_vector, write_state_vector

_TOKEN_FORMAT = 1
MAX_TOKEN_LENGTH = 1 << 20
"""A token longer than this many characters is refused without decoding."""


class Order(enum.StrEnum):
    """How two versions relate."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"

    def __str__(self) -> str:
        return self.value


class Version:
    """A version vector (client id -> clock) plus the set of deleted ids; a partial order."""

    __slots__ = ("_clocks", "_deleted")

    def __init__(
        self, clocks: Mapping[int, int] | None = None, deleted: IdSet | None = None
    ) -> None:
        self._clocks = {c: k for c, k in (clocks or {}).items() if k > 0}
        self._deleted = deleted if deleted is not None else IdSet()

    @property
    def clocks(self) -> dict[int, int]:
        """client id -> number of structs seen from that client (a copy)."""
        return dict(self._clocks)

    @property
    def deleted(self) -> IdSet:
        """The ids this version has seen deleted."""
        return self._deleted

    def compare(self, other: Version) -> Order:
        """EQUAL, BEFORE (self saw less), AFTER (self saw more) or CONCURRENT."""
        le = self <= other
        ge = other <= self
        if le and ge:
            return Order.EQUAL
        if le:
            return Order.BEFORE
        if ge:
            return Order.AFTER
        return Order.CONCURRENT

    def __le__(self, other: Version) -> bool:
        theirs = other._clocks
        if any(k > theirs.get(c, 0) for c, k in self._clocks.items()):
            return False
        return self._deleted.issubset(other._deleted)

    def __ge__(self, other: Version) -> bool:
        return other <= self

    def __lt__(self, other: Version) -> bool:
        return self <= other and self != other

    def __gt__(self, other: Version) -> bool:
        return other < self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._clocks == other._clocks and self._deleted == other._deleted

    def __hash__(self) -> int:
        return hash((tuple(sorted(self._clocks.items())), self._deleted))

    def join(self, other: Version) -> Version:
        """The least version that includes both (what a replica has after receiving both)."""
        clocks = dict(self._clocks)
        for c, k in other._clocks.items():
            if k > clocks.get(c, 0):
                clocks[c] = k
        return Version(clocks, self._deleted.union(other._deleted))

    def __or__(self, other: Version) -> Version:
        return self.join(other)

    def __repr__(self) -> str:
        clocks = ", ".join(f"{c}:{k}" for c, k in sorted(self._clocks.items()))
        return f"Version({{{clocks}}}, deleted={len(self._deleted)})"

    # -- bytes and tokens ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compact binary form: format byte, state vector, delete set (lib0 varints)."""
        enc = Encoder()
        enc.write_u8(_TOKEN_FORMAT)
        write_state_vector(enc, self._clocks)
        self._deleted.encode_into(enc)
        return enc.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Version:
        dec = Decoder(data, InvalidVersionToken)
        fmt = dec.read_u8()
        if fmt != _TOKEN_FORMAT:
            raise InvalidVersionToken(f"unknown version format {fmt}; this crdtdoc reads format 1")
        clocks = read_state_vector(dec)
        deleted = IdSet.decode_from(dec, max_clock=MAX_CLOCK, max_client=MAX_CLIENT_ID)
        if not dec.at_end():
            raise dec.fail(f"{dec.remaining} trailing bytes")
        return cls(clocks, deleted)

    def token(self) -> str:
        """A url-safe string naming this version, short enough to paste into a chat message."""
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    @classmethod
    def from_token(cls, token: str) -> Version:
        """The version a `token()` names; raises `InvalidVersionToken` for anything else."""
        if not isinstance(token, str):
            raise InvalidVersionToken(f"a version token is a str, not {type(token).__name__}")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidVersionToken(f"version token of {len(token)} characters is too long")
        token = token.strip()
        if not token or any(ch not in _TOKEN_ALPHABET for ch in token):
            raise InvalidVersionToken("a version token uses only the characters A-Z a-z 0-9 - _")
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidVersionToken("version token is not valid base64url") from None
        try:
            return cls.from_bytes(data)
        except InvalidVersionToken as exc:  # say what was expected, then what was wrong
            raise InvalidVersionToken(f"not a version token ({exc})") from None


_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

"""Coordination requests as typed values (PROTOCOL.md section 10), shared by the client that
sends them and the hub that answers: one frozen dataclass per operation, each read from a
request's `args` map by one bounded reader that only ever raises `RequestError` (code
`invalid`), and `ReplyCode`, every code a reply may carry. The wire stays a msgpack map: `op`
and `args` are what `to_args` writes and `parse_request` reads."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from crdtdoc.errors import CrdtdocError, InvalidValue, RemoteError
from crdtdoc.protocol.awareness import check_presence
from crdtdoc.provenance import MAX_ROWS_PER_REPLY, is_hub_tag
from crdtdoc.values import check_text
from crdtdoc.versions import Version

_R = TypeVar("_R")

MAX_NAME = 200
"""Longest lease or sequence name, in characters."""
MIN_TTL, MAX_TTL = 0.1, 3600.0
"""A lease's time to live, in seconds."""
MAX_WAIT = 600.0
"""Longest wait in line for a lease, in seconds."""
MAX_COMMIT_UPDATES = 1000
"""Most updates one guarded commit carries (a client sends one per transaction of the block)."""
MAX_STATUS_SECONDS = 86400.0
"""Longest a status set with `SetStatus` is shown, in seconds."""


class ReplyCode(enum.StrEnum):
    """Why a request was refused (a reply's `error`); a str, as it travels."""

    HELD = "held"
    DEADLOCK = "deadlock"
    LIMIT = "limit"
    LOST = "lost"
    FORBIDDEN = "forbidden"
    FENCED = "fenced"
    CONFLICT = "conflict"
    MISSING = "missing"
    FULL = "full"
    INVALID = "invalid"
    INTERNAL = "internal"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class RequestError(RemoteError):
    """A request refused: `code` and the message go back in the reply, with `details` as its
    result; the connection stays open."""

    def __init__(self, code: ReplyCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def check_name(value: object, what: str) -> str:
    """`value`, if it can name a lease or a sequence: a str of 1..`MAX_NAME` characters that
    every store holds (no NUL: PostgreSQL refuses it; no lone surrogate: no encoding carries
    it); else `InvalidValue`. Both sides use it: the hub reading a request, a client making one."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise InvalidValue(f"{what} must be a str of 1..{MAX_NAME} characters")
    if "\x00" in value:
        raise InvalidValue(f"{what} may not hold a NUL character")
    return check_text(value, what)


def _name(args: dict[str, Any], key: str) -> str:
    return _checked_name(args.get(key), key)


def _checked_name(value: object, what: str) -> str:
    """`check_name`, refusing as a request is refused."""
    try:
        return check_name(value, what)
    except InvalidValue as exc:
        raise RequestError(ReplyCode.INVALID, str(exc)) from None


def _int(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(ReplyCode.INVALID, f"{key} must be an int")
    return value


def _optional_int(args: dict[str, Any], key: str) -> int | None:
    return None if args.get(key) is None else _int(args, key)


def _number(
    args: dict[str, Any], key: str, low: float, high: float, default: float | None = None
) -> float:
    value = args.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(ReplyCode.INVALID, f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _sent(**fields: Any) -> dict[str, Any]:
    """The args map of a request: its fields, optional ones left out when unset."""
    return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Acquire:
    """Take lease `name` for `ttl` seconds, waiting in line up to `wait` seconds."""

    op: ClassVar[str] = "acquire"
    name: str
    ttl: float
    wait: float = 0.0
    client: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "name")

    def to_args(self) -> dict[str, Any]:
        return _sent(name=self.name, ttl=self.ttl, wait=self.wait, client=self.client)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Acquire:
        return cls(
            _name(args, "name"),
            _number(args, "ttl", MIN_TTL, MAX_TTL),
            _number(args, "wait", 0.0, MAX_WAIT, default=0.0),
            _optional_int(args, "client"),
        )


@dataclass(frozen=True)
class Renew:
    """Extend lease `name`, held under fencing `token`, to `ttl` seconds from now."""

    op: ClassVar[str] = "renew"
    name: str
    token: int
    ttl: float
    client: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "name")

    def to_args(self) -> dict[str, Any]:
        return _sent(name=self.name, token=self.token, ttl=self.ttl, client=self.client)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Renew:
        return cls(
            _name(args, "name"),
            _int(args, "token"),
            _number(args, "ttl", MIN_TTL, MAX_TTL),
            _optional_int(args, "client"),
        )


@dataclass(frozen=True)
class Release:
    """Free lease `name`, held under fencing `token`, for the next in line."""

    op: ClassVar[str] = "release"
    name: str
    token: int
    client: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "name")

    def to_args(self) -> dict[str, Any]:
        return _sent(name=self.name, token=self.token, client=self.client)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Release:
        return cls(_name(args, "name"), _int(args, "token"), _optional_int(args, "client"))


@dataclass(frozen=True)
class ListLeases:
    """The room's leases and who waits for them."""

    op: ClassVar[str] = "leases"

    def to_args(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ListLeases:
        return cls()


@dataclass(frozen=True)
class NextNumber:
    """The next number of sequence `sequence` (1, 2, 3... per room and name)."""

    op: ClassVar[str] = "next"
    sequence: str

    def __post_init__(self) -> None:
        check_name(self.sequence, "sequence")

    def to_args(self) -> dict[str, Any]:
        return {"sequence": self.sequence}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> NextNumber:
        return cls(_name(args, "sequence"))


@dataclass(frozen=True)
class SetStatus:
    """Show this agent with `status` (and `task`) for `ttl` seconds; a None status clears it."""

    op: ClassVar[str] = "status"
    status: str | None
    task: str | None = None
    ttl: float = 600.0

    def __post_init__(self) -> None:
        if self.status is not None:
            check_presence(self.status, self.task)

    def to_args(self) -> dict[str, Any]:
        return {"status": self.status, "task": self.task, "ttl": self.ttl}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> SetStatus:
        status, task = args.get("status"), args.get("task")
        if status is not None:
            try:
                check_presence(status, task)
            except InvalidValue as exc:
                raise RequestError(ReplyCode.INVALID, str(exc)) from None
        elif task is not None and not isinstance(task, str):
            raise RequestError(ReplyCode.INVALID, "a presence task is a str")
        ttl = _number(args, "ttl", 1.0, MAX_STATUS_SECONDS, default=600.0)
        return cls(status, task, ttl)


@dataclass(frozen=True)
class Commit:
    """Apply `updates` (written by `client`) only if the lease `fence` (name, fencing token)
    is still current and nobody else changed the artifacts `on` (all when empty) since
    `expect`; otherwise apply none of them."""

    op: ClassVar[str] = "commit"
    updates: tuple[bytes, ...]
    client: int
    fence: tuple[str, int] | None = None
    expect: Version | None = None
    on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.fence is not None:
            check_name(self.fence[0], "the fence's lease name")

    def to_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"updates": list(self.updates), "client": self.client}
        if self.fence is not None:
            args["fence"] = {"name": self.fence[0], "token": self.fence[1]}
        if self.expect is not None:
            args["expect"] = self.expect.to_bytes()
            args["on"] = list(self.on)
        return args

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Commit:
        updates, client = args.get("updates"), args.get("client")
        if (
            not isinstance(updates, list)
            or not updates
            or not all(isinstance(u, bytes) for u in updates)
            or not isinstance(client, int)
            or isinstance(client, bool)
        ):
            raise RequestError(
                ReplyCode.INVALID, "commit needs updates (a list of bytes) and client"
            )
        if len(updates) > MAX_COMMIT_UPDATES:
            raise RequestError(
                ReplyCode.INVALID, f"a commit carries at most {MAX_COMMIT_UPDATES} updates"
            )
        fence = args.get("fence")
        if fence is not None:
            name, token = (
                (fence.get("name"), fence.get("token")) if isinstance(fence, dict) else ("", "")
            )
            if not isinstance(name, str) or not isinstance(token, int) or isinstance(token, bool):
                raise RequestError(ReplyCode.INVALID, "fence must be {name: str, token: int}")
            fence = (_checked_name(name, "fence name"), token)
        expect, on = args.get("expect"), args.get("on") or []
        since = None
        if expect is not None:
            if (
                not isinstance(expect, bytes)
                or not isinstance(on, list)
                or not all(isinstance(n, str) for n in on)
            ):
                raise RequestError(
                    ReplyCode.INVALID, "expect must be a version, on a list of names"
                )
            try:
                since = Version.from_bytes(expect)
            except CrdtdocError as exc:
                raise RequestError(ReplyCode.INVALID, f"expect is not a version: {exc}") from None
        return cls(tuple(updates), client, fence, since, tuple(on) if since is not None else ())


@dataclass(frozen=True)
class ReadProvenance:
    """The hub's provenance rows of the room (`crdtdoc.provenance`), in (hub, n) order, past
    the row `after` names (None: from the first), at most `limit`. The result is `{"rows":
    [...], "more": bool}`; read on from the last row while `more`."""

    op: ClassVar[str] = "provenance"
    after: tuple[str, int] | None = None
    limit: int = MAX_ROWS_PER_REPLY

    def to_args(self) -> dict[str, Any]:
        return _sent(after=list(self.after) if self.after is not None else None, limit=self.limit)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ReadProvenance:
        after = args.get("after")
        if after is not None:
            if (
                not isinstance(after, list)
                or len(after) != 2
                or not is_hub_tag(after[0])
                or not isinstance(after[1], int)
                or isinstance(after[1], bool)
                or not 0 <= after[1] < 2**63
            ):
                raise RequestError(
                    ReplyCode.INVALID, "after must be [hub tag (hex), row number (0..2**63-1)]"
                )
            after = (after[0], after[1])
        limit = args.get("limit", MAX_ROWS_PER_REPLY)
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 0 < limit <= MAX_ROWS_PER_REPLY
        ):
            raise RequestError(
                ReplyCode.INVALID, f"limit must be an int from 1 to {MAX_ROWS_PER_REPLY}"
            )
        return cls(after, limit)


CoordinationRequest = Acquire | Renew | Release | ListLeases | NextNumber
"""A request the hub's coordinator answers."""
_BY_OP: dict[str, Callable[[dict[str, Any]], CoordinationRequest]] = {
    kind.op: kind.from_args for kind in (Acquire, Renew, Release, ListLeases, NextNumber)
}


OutgoingRequest = CoordinationRequest | Commit | SetStatus | ReadProvenance
"""Any request a client sends."""
_ANY_BY_OP: dict[str, Callable[[dict[str, Any]], OutgoingRequest]] = {
    **_BY_OP,
    SetStatus.op: SetStatus.from_args,
    Commit.op: Commit.from_args,
    ReadProvenance.op: ReadProvenance.from_args,
}


def parse_request(op: object, args: object) -> CoordinationRequest:
    """The coordination request `op` with `args` describes; `RequestError` (code `invalid`)
    for an unknown operation or arguments out of bounds."""
    return _read(_BY_OP, op, args)


def read_request(op: object, args: object) -> OutgoingRequest:
    """Any request `op` with `args` describes, `status`, `commit` and `provenance` included
    (what a client checks before sending a raw request); `RequestError` (code `invalid`)
    otherwise."""
    return _read(_ANY_BY_OP, op, args)


def _read(readers: Mapping[str, Callable[[dict[str, Any]], _R]], op: object, args: object) -> _R:
    read = readers.get(op) if isinstance(op, str) else None
    if read is None:
        raise RequestError(ReplyCode.INVALID, f"unknown operation {op!r}")
    if not isinstance(args, dict):
        raise RequestError(ReplyCode.INVALID, "args must be a map")
    return read(args)

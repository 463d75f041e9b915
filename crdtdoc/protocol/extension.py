"""crdtdoc's extension messages: y-protocols message type 100 with a msgpack map as payload.

A stock Yjs client never sees these: a crdtdoc client opts in by sending `Hello` first, and only
then does the hub send it `Welcome` and, after durable commits (coalesced), `Durable` with the hub's
durable version; while the hub's store cannot commit, `Durable` also says why (`store_error`).
Unknown keys are ignored (newer peers may add some); unknown types are refused.

Protocol 2 (a client says it in `Hello`, the hub answers with the version both speak): `Durable`
may be a delta, carrying only what became durable since the previous `Durable` or `Welcome` on the
link, and the client joins it into what it was told (`DurableTracker`). A version carries a room's
whole delete set, so full acknowledgements grew with the document's history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from crdtdoc.errors import InvalidMessage, InvalidVersionToken
from crdtdoc.idset import IdSet
from crdtdoc.protocol.messages import Extension
from crdtdoc.versions import Version

PROTOCOL_VERSION = 2
"""The extension protocol this crdtdoc speaks. 1: every `Durable` carries the full durable
version. 2: a hub may send a `Durable` as a delta (`Durable.delta`)."""
DELTA_PROTOCOL = 2
"""The first protocol version in which a hub sends delta `Durable` messages."""
MAX_AGENT_NAME = 200


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> hub, first: "I speak crdtdoc's extensions; I am `agent`"."""

    agent: str
    protocol: int = PROTOCOL_VERSION


DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""The largest message a hub accepts unless configured otherwise (`crdtdoc serve
--max-message-bytes`), and what a client assumes until a welcome says."""


@dataclass(frozen=True, slots=True)
class Welcome:
    """Hub -> client, answering `Hello`: the room, what the hub has durably stored so far, and
    the largest message it accepts (None: not said), so a client refuses a bigger write at once
    instead of sending what the hub would close the link over."""

    room: str
    durable: Version
    protocol: int = PROTOCOL_VERSION
    max_message_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Durable:
    """Hub -> client after each durable commit: everything in `version` survives a hub crash.

    With `store_error`: the hub's store cannot commit now (the database's own words, "database
    or disk is full"); what is not in `version` waits in the hub's memory and is retried. Sent
    when the store starts failing (to a client that joins meanwhile, at the next retry); the
    next `Durable` without it says the store commits again."""

    version: Version
    store_error: str | None = None
    delta: bool = False
    """True: `version` holds only what became durable since the previous `Durable` or `Welcome`
    on this link (the clients whose clocks advanced, the newly durable deletions); the receiver
    joins it into what it was told. Sent only to clients that said protocol 2 or more."""


def durable_delta(version: Version, since: Version) -> Version:
    """What `version` holds that `since` (an older durable version of the same room) does not:
    the clocks that advanced, and the deletions `since` lacks. Joined to any version that
    includes `since`, it gives one that includes `version`."""
    theirs = since.clocks
    clocks = {c: k for c, k in version.clocks.items() if k > theirs.get(c, 0)}
    return Version(clocks, version.deleted.difference(since.deleted))


class DurableTracker:
    """What a client knows the hub holds durably, from `Welcome` and `Durable` messages.

    A full version replaces what was known (a welcome, a hub speaking protocol 1, a resync); a
    delta is joined in. The delete set is kept in a set of our own and grown range by range, so
    a delta costs what it holds, not what the room's history holds; `version` makes an
    immutable copy only when someone asks for it. Thread-safe: a `BlockingReplica` takes in
    messages on its link's thread and asks `covers` from its caller's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clocks: dict[int, int] = {}
        self._deleted = IdSet()  # ours alone: grown in place by `add`, never handed out
        self._live = Version({}, self._deleted)  # wraps `_deleted`, uncopied: for comparing
        self._copy: Version | None = Version()  # what `version` returned, until a change

    @property
    def version(self) -> Version:
        """The newest version known to be durable (an immutable copy)."""
        with self._lock:
            if self._copy is None:
                self._copy = Version(self._clocks, self._deleted.copy())
            return self._copy

    def covers(self, version: Version) -> bool:
        """Whether everything in `version` is durable: `version <= self.version`, without the
        copy."""
        with self._lock:
            return version <= self._live

    def receive(self, message: Welcome | Durable) -> None:
        """Takes in what a welcome or a durable message says."""
        with self._lock:
            if isinstance(message, Durable) and message.delta:
                self._join(message.version)
            else:
                self._replace(message.durable if isinstance(message, Welcome) else message.version)
            self._live = Version(self._clocks, self._deleted)
            self._copy = None

    def _replace(self, version: Version) -> None:
        self._clocks = version.clocks
        self._deleted = version.deleted.copy()

    def _join(self, delta: Version) -> None:
        for client, clock in delta.clocks.items():
            if clock > self._clocks.get(client, 0):
                self._clocks[client] = clock
        for client, start, end in delta.deleted:
            self._deleted.add(client, start, end)


@dataclass(frozen=True, slots=True)
class Request:
    """Client -> hub: a coordination operation (`op`) the hub answers with a `Reply` of the same
    `id`. Operations and their arguments are listed in PROTOCOL.md section 10."""

    id: int
    op: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """Hub -> client: the outcome of request `id`: `result` when `error` is None, else an error
    code (PROTOCOL.md section 10) with a message a person can read and details in `result`."""

    id: int
    result: dict[str, Any]
    error: str | None = None
    message: str = ""


ExtensionMessage = Hello | Welcome | Durable | Request | Reply


def encode_extension(message: ExtensionMessage) -> Extension:
    body: dict[str, Any]
    if isinstance(message, Hello):
        body = {"type": "hello", "protocol": message.protocol, "agent": message.agent}
    elif isinstance(message, Welcome):
        body = {
            "type": "welcome",
            "protocol": message.protocol,
            "room": message.room,
            "durable": message.durable.to_bytes(),
        }
        if message.max_message_bytes is not None:
            body["max_message_bytes"] = message.max_message_bytes
    elif isinstance(message, Durable):
        key = "delta" if message.delta else "version"
        body = {"type": "durable", key: message.version.to_bytes()}
        if message.store_error is not None:
            body["store_error"] = message.store_error
    elif isinstance(message, Request):
        body = {"type": "request", "id": message.id, "op": message.op, "args": message.args}
    else:
        body = {
            "type": "reply",
            "id": message.id,
            "result": message.result,
            "error": message.error,
            "message": message.message,
        }
    return Extension(msgpack.packb(body, use_bin_type=True))


def decode_extension(message: Extension) -> ExtensionMessage:
    """Parses an extension payload; raises `InvalidMessage` saying what is wrong."""
    try:
        body = msgpack.unpackb(message.payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise InvalidMessage(f"extension message payload is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidMessage("extension message payload must be a msgpack map")
    kind = body.get("type")
    if kind == "hello":
        agent = _field(body, "agent", str)
        if not agent or len(agent) > MAX_AGENT_NAME:
            raise InvalidMessage(f"hello: agent must be 1..{MAX_AGENT_NAME} characters")
        return Hello(agent, _field(body, "protocol", int))
    if kind == "welcome":
        limit = body.get("max_message_bytes")
        if limit is not None and (type(limit) is not int or limit <= 0):
            raise InvalidMessage("welcome: field 'max_message_bytes' must be a positive int")
        return Welcome(
            _field(body, "room", str),
            _version(body, "durable"),
            _field(body, "protocol", int),
            limit,
        )
    if kind == "durable":
        store_error = body.get("store_error")
        if store_error is not None and not isinstance(store_error, str):
            raise InvalidMessage("durable: field 'store_error' must be str or nil")
        if "delta" not in body:
            return Durable(_version(body, "version"), store_error)
        if "version" in body:
            raise InvalidMessage("durable: carries 'version' or 'delta', not both")
        return Durable(_version(body, "delta"), store_error, delta=True)
    if kind == "request":
        return Request(_field(body, "id", int), _field(body, "op", str), _field(body, "args", dict))
    if kind == "reply":
        error = body.get("error")
        if error is not None and not isinstance(error, str):
            raise InvalidMessage("reply: field 'error' must be str or nil")
        message = body.get("message", "")
        return Reply(
            _field(body, "id", int),
            _field(body, "result", dict),
            error,
            message if isinstance(message, str) else "",
        )
    raise InvalidMessage(
        f"unknown extension message type {kind!r} (known: hello, welcome, durable, request, reply)"
    )


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidMessage(
            f"{body.get('type')}: field {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _version(body: dict[str, Any], key: str) -> Version:
    try:
        return Version.from_bytes(_field(body, key, bytes))
    except InvalidVersionToken as exc:
        raise InvalidMessage(f"{body.get('type')}: field {key!r} is not a version: {exc}") from None

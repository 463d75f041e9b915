"""y-protocols awareness updates (presence: who is here), decoded with bounds.

An awareness update is a varuint count, then for each entry a varuint client id, a varuint clock
and a JSON string (the literal `null` means "this client left"). The hub keeps the newest state of
each client and relays updates, so it checks the JSON itself: a stock Yjs client would throw on a
malformed state, and one bad peer must not break everyone else's presence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crdtdoc.contents import json_safe, no_json_constant
from crdtdoc.encoding import Decoder, Encoder
from crdtdoc.errors import InvalidMessage, InvalidValue
from crdtdoc.values import check_text

MAX_AWARENESS_ENTRIES = 1024
"""Entries one awareness update may carry."""
MAX_AWARENESS_CLIENT = 2**53 - 1
MAX_AWARENESS_CLOCK = 2**53 - 1
KEPT_CLIENT_IDS = 1 << 32
"""Awareness client ids from here up are the hub's kept statuses (Yjs clients use 32 bits):
only there does an `until` field mean anything."""


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's presence state at `clock`; `state` is its JSON text (`"null"` when gone)."""

    client: int
    clock: int
    state: str

    @property
    def removed(self) -> bool:
        return self.state == "null"


def decode_awareness(data: bytes, *, max_state_bytes: int) -> list[AwarenessEntry]:
    """Parses an awareness update; raises `InvalidMessage` saying what is wrong."""
    dec = Decoder(data, InvalidMessage)
    count = dec.read_var_uint()
    if count > MAX_AWARENESS_ENTRIES:
        raise dec.fail(f"awareness update with {count} entries (at most {MAX_AWARENESS_ENTRIES})")
    entries = []
    for _ in range(count):
        client = dec.read_var_uint()
        clock = dec.read_var_uint()
        if client > MAX_AWARENESS_CLIENT or clock > MAX_AWARENESS_CLOCK:
            raise dec.fail("awareness client id or clock beyond 2**53")
        start = dec.pos
        state = dec.read_var_string()
        if dec.pos - start > max_state_bytes:
            raise dec.fail(
                f"awareness state of client {client} is {dec.pos - start} bytes "
                f"(the hub accepts at most {max_state_bytes})"
            )
        _check_json(dec, client, state)
        entries.append(AwarenessEntry(client, clock, state))
    if not dec.at_end():
        raise dec.fail(f"{dec.remaining} trailing bytes after the awareness update")
    return entries


def _check_json(dec: Decoder, client: int, state: str) -> None:
    """Refuses a state every peer could not read back: not JSON as JavaScript's `JSON.parse`
    reads it (no NaN or Infinity, no number beyond a double), or holding a lone surrogate
    (escaped as `\\ud800`: no reader can print it, and an MCP server writing it dies)."""
    try:
        value = json.loads(state, parse_constant=no_json_constant)
    except (ValueError, RecursionError):
        raise dec.fail(f"awareness state of client {client} is not valid JSON") from None
    if not json_safe(value):
        raise dec.fail(
            f"awareness state of client {client} holds a lone surrogate or a number beyond a "
            "double: not every peer can read it"
        )


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(len(entries))
    for entry in entries:
        enc.write_var_uint(entry.client)
        enc.write_var_uint(entry.clock)
        enc.write_var_string(entry.state)
    return enc.to_bytes()


MAX_STATUS_CHARS = 200
"""Longest status or task name an agent may publish (presence travels to every peer often)."""


def check_presence(status: object, task: object) -> None:
    """Raises `InvalidValue` unless `status` is a str and `task` a str or None, each at most
    `MAX_STATUS_CHARS` characters: the one rule every way of setting presence uses."""
    for what, value in (("status", status), ("task", task)):
        if value is None and what == "task":
            continue
        if not isinstance(value, str):
            raise InvalidValue(f"a presence {what} is a str, not {type(value).__name__}")
        if len(value) > MAX_STATUS_CHARS:
            raise InvalidValue(
                f"a presence {what} is at most {MAX_STATUS_CHARS} characters ({len(value)} given)"
            )
        check_text(value, f"a presence {what}")


def presence_state(agent: str, status: str, task: str | None, until: float | None = None) -> str:
    """A crdtdoc client's awareness state: `{"agent", "status", "task", "user": {"name"}}`
    (`user.name` is what Yjs editors show), with `until` (Unix time) for a status the hub
    keeps on an agent's behalf after its command ended."""
    state: dict[str, Any] = {"agent": agent, "status": status, "user": {"name": agent}}
    if task is not None:
        state["task"] = task
    if until is not None:
        state["until"] = round(until, 3)
    return json.dumps(state, separators=(",", ":"))

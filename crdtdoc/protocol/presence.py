"""Presence: who is in the room, as y-protocols awareness states.

A crdtdoc client publishes `{"agent", "status", "task", "user": {"name"}}` (the `user.name` field is
what Yjs editors show); any JSON object a stock client publishes is reported as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crdtdoc.contents import json_safe
from crdtdoc.protocol.awareness import (
    KEPT_CLIENT_IDS,
    MAX_STATUS_CHARS,
    check_presence,
    presence_state,
)

__all__ = ["MAX_STATUS_CHARS", "Presence", "check_presence", "parse_presence", "presence_state"]


@dataclass(frozen=True)
class Presence:
    """One connected client as its awareness state describes it."""

    client_id: int
    agent: str | None
    status: str | None = None
    task: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the full awareness state
    last_seen: float | None = None  # Unix time this client's presence was last renewed
    until: float | None = None  # a status the hub keeps for a command: Unix time it ends


def parse_presence(client_id: int, state_json: str) -> Presence:
    try:
        state = json.loads(state_json)
    except (ValueError, RecursionError):
        state = None
    if not json_safe(state):  # refused at the hub (`decode_awareness`); never shown either
        state = None
    if not isinstance(state, dict):
        return Presence(client_id, None, state={"value": state})
    agent = state.get("agent")
    if not isinstance(agent, str):
        user = state.get("user")
        agent = user.get("name") if isinstance(user, dict) else None
    status, task, until = state.get("status"), state.get("task"), state.get("until")
    return Presence(
        client_id,
        agent if isinstance(agent, str) else None,
        status if isinstance(status, str) else None,
        task if isinstance(task, str) else None,
        state,
        until=(
            float(until)
            if client_id >= KEPT_CLIENT_IDS and isinstance(until, (int, float)) and until > 0
            else None
        ),  # only the hub's kept statuses end at a time: any client can write the field
    )

"""Presence: who is in the room, as y-protocols awareness states.

A crdtdoc client publishes `{"agent", "status", "task", "user": {"name"}}` (the `user.name` field is
what Yjs editors show); any JSON object a stock client publishes is reported as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crdtdoc.errors import InvalidValue


@dataclass(frozen=True)
class Presence:
    """One connected client as its awareness state describes it."""

    client_id: int
    agent: str | None
    status: str | None = None
    task: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the full awareness state
    last_seen: float | None = None  # Unix time this client's presence was last renewed


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


def presence_state(agent: str, status: str, task: str | None) -> str:
    state: dict[str, Any] = {"agent": agent, "status": status, "user": {"name": agent}}
    if task is not None:
        state["task"] = task
    return json.dumps(state, separators=(",", ":"))


def parse_presence(client_id: int, state_json: str) -> Presence:
    try:
        state = json.loads(state_json)
    except (ValueError, RecursionError):
        state = None
    if not isinstance(state, dict):
        return Presence(client_id, None, state={"value": state})
    agent = state.get("agent")
    if not isinstance(agent, str):
        user = state.get("user")
        agent = user.get("name") if isinstance(user, dict) else None
    status, task = state.get("status"), state.get("task")
    return Presence(
        client_id,
        agent if isinstance(agent, str) else None,
        status if isinstance(status, str) else None,
        task if isinstance(task, str) else None,
        state,
    )

"""Who may write what: read-only tokens, per-artifact scopes, frozen specs, client-id ownership,
forged agent names, and room size. The hub checks every update here before applying it.

The room replica's `RootIndex` (`crdtdoc.rootindex`) knows which root (artifact) every item lives
under, so an update can be judged by the artifacts it touches, including items nested in maps and
arrays and ids it deletes.
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtdoc.errors import Forbidden
from crdtdoc.roots import AGENTS_ROOT, INTERNAL_ROOTS
from crdtdoc.updates import Item

BOOKKEEPING = INTERNAL_ROOTS
"""Roots every writer may touch (its own agent entry, deletion log, artifact kinds, notes)."""


def check_agent_entries(
    items: Iterable[Item], roots: dict[tuple[int, int], str | None], agent: str
) -> None:
    """An item in the agents registry must be its own client's entry, naming `agent`."""
    for item in items:
        if roots.get((item.client, item.clock)) != AGENTS_ROOT or item.parent_sub is None:
            continue
        value = item.value[-1] if isinstance(item.value, list) and item.value else None
        if item.parent_sub != str(item.client) or value != agent:
            raise Forbidden(
                f"attribution refused: client {item.client} may only register itself, as {agent!r}"
            )

"""Deadlock detection for lease waits: `find_cycle` looks for a cycle in the wait-for graph (who
waits for a lease whose holder waits, in turn, ...). Both coordinators ask it before a request
joins a queue, and again for the remaining waiters whenever a lease changes hands; a wait that
would close a cycle is refused with `deadlock` instead of waiting forever."""

from __future__ import annotations

from crdtdoc.protocol.requests import ReplyCode, RequestError
from crdtdoc.server.coordination_rules import Key


def find_cycle(
    owner: str,
    holders: dict[Key, tuple[str, str]],
    waits: list[tuple[Key, str, str]],
) -> list[str]:
    """A cycle in the wait-for graph that passes through `owner`, described step by step, or []
    if there is none. `holders` maps a lease to its (owner, agent); `waits` lists who (owner,
    agent) waits for which lease. Owners are "agent#client id"."""
    edges: dict[str, list[tuple[str, str, str]]] = {}
    agents = {w_owner: agent for _, w_owner, agent in waits}
    agents.update(dict(holders.values()))
    for key, w_owner, _ in waits:
        holder = holders.get(key)
        if holder is not None:
            edges.setdefault(w_owner, []).append((key[1], holder[0], holder[1]))
    path: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> bool:
        for name, holder, holder_agent in edges.get(node, []):
            path.append(f"{agents.get(node, node)} waits for {name!r} held by {holder_agent}")
            if holder == owner:
                return True
            if holder not in seen:
                seen.add(holder)
                if visit(holder):
                    return True
            path.pop()
        return False

    return path if visit(owner) else []


def deadlock_refusal(cycle: list[str]) -> RequestError:
    """The refusal of a wait that would close `cycle` (as `find_cycle` describes it)."""
    return RequestError(
        ReplyCode.DEADLOCK, "waiting would deadlock: " + "; ".join(cycle), cycle=cycle
    )

"""The hub's side of the review gates (`crdtdoc.gates`): what a writer may not write, so that a
writer that skips crdtdoc's own checks (a raw Yjs client, a patched replica) cannot count a task
done or freeze a spec without the others' word. Replicas count only entries the rules admit;
the hub refuses, with the writer's identity (a hub with a secret), anything that would forge or
skip them:

- a verification is written under the writer's own client id, names the writer's identity as
  `by`, and is not by an agent who completed the task (nor in the same update as a completion);
- a completion names its writer as `by`;
- a task's `verify` requirement is written only with the task itself, never changed after;
- a spec's freeze proposal names its writer (and not as an approver), is made once, and is
  removed only by its writer;
  while one waits, nobody writes the unconditional `frozen` entry;
- an approval is written under the writer's own client id, names the writer, is not the
  proposer's, and, when the proposal names approvers and asks no quorum, comes from one of them;
  approvals are removed only by their own client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from crdtdoc.contents import ANY, TYPE
from crdtdoc.errors import Forbidden
from crdtdoc.gates import APPROVAL_PREFIX, PROPOSAL_KEY, Proposal
from crdtdoc.itemindex import Locator
from crdtdoc.places import Place
from crdtdoc.updates import Item

FROZEN_KEY = "frozen"


@dataclass(frozen=True)
class GateFacts:
    """What the gate rules read about the room as it is before the update."""

    proposals: Mapping[str, Proposal] = field(default_factory=dict)  # spec -> its proposal
    completers: Callable[[str, str], frozenset[str]] = lambda tasks, task: frozenset()
    task_exists: Callable[[str, str], bool] = lambda tasks, task: False
    has: Callable[[int, int], bool] = lambda client, clock: False  # the room holds this id


def judge_task_item(
    item: Item,
    place: Place,
    locator: Locator,
    identity: str | None,
    root: str,
    facts: GateFacts,
) -> str | None:
    """Raises `Forbidden` for an item of a task list that would forge or skip a review gate;
    returns "completion" or "verification" for those entries (an update may not hold both)."""
    parent = place.parent
    if not isinstance(parent, tuple):  # a task itself, at the list's top level
        if place.sub is not None and facts.task_exists(root, place.sub):
            raise Forbidden(f"task {place.sub} exists: a task is never replaced (docs/SCHEMA.md)")
        return None
    holder = locator.place_of_id(parent)
    if holder is None:
        return None
    if holder.parent == root:  # a field of a task
        if place.sub == "verify" and facts.has(*parent):
            raise Forbidden("a task's verification requirement is set when it is created")
        if place.sub in ("completions", "verifications") and item.content != TYPE:
            raise Forbidden(f"a task's {place.sub} is a Y.Map (docs/SCHEMA.md)")
        return None
    task = locator.place_of_id(holder.parent) if isinstance(holder.parent, tuple) else None
    if task is None or task.parent != root or task.sub is None:
        return None
    if holder.sub == "completions":
        _signed(item, identity, "a completion")
        return "completion"
    if holder.sub == "verifications":
        if place.sub != str(item.client):
            raise Forbidden("a verification is written under its writer's own client id")
        by = _signed(item, identity, "a verification")
        if by in facts.completers(root, task.sub):
            raise Forbidden(
                f"{by} completed task {task.sub}: a verification comes from another agent"
            )
        return "verification"
    return None


def judge_spec_item(
    item: Item, place: Place, identity: str | None, root: str, facts: GateFacts
) -> None:
    """Raises `Forbidden` for an entry of a spec that would forge or skip its freeze gate."""
    if place.parent != root or place.sub is None:
        return
    proposal = facts.proposals.get(root)
    if place.sub == PROPOSAL_KEY:
        if proposal is not None:
            raise Forbidden(f"a freeze of {root!r} is proposed already; approve it")
        by = _signed(item, identity, "a freeze proposal")
        value = item.value[-1] if item.content == ANY and item.value else None
        named = value.get("approvers") if isinstance(value, dict) else None
        if isinstance(named, list) and by in named:
            raise Forbidden("a freeze waits for others: its proposer is no approver")
    elif place.sub == FROZEN_KEY and proposal is not None:
        raise Forbidden(f"the freeze of {root!r} waits for approvals: approve it")
    elif place.sub.startswith(APPROVAL_PREFIX):
        if place.sub != APPROVAL_PREFIX + str(item.client):
            raise Forbidden("an approval is written under its writer's own client id")
        by = _signed(item, identity, "an approval")
        if proposal is None:
            raise Forbidden(f"no freeze of {root!r} waits for approval")
        if by == proposal.by:
            raise Forbidden(f"{by} proposed the freeze of {root!r}: another agent approves it")
        if proposal.approvers and not proposal.quorum and by not in proposal.approvers:
            raise Forbidden(f"the freeze waits for {', '.join(proposal.approvers)}, not {by}")


def judge_spec_delete(
    place: Place,
    client: int,
    owns: Callable[[int], bool],
    identity: str | None,
    root: str,
    facts: GateFacts,
) -> None:
    """Raises `Forbidden` for deleting a spec's proposal or approvals that are not the
    writer's own."""
    if place.parent != root or place.sub is None:
        return
    if place.sub.startswith(APPROVAL_PREFIX) and not owns(client):
        raise Forbidden("an approval is removed only by its own client")
    proposal = facts.proposals.get(root)
    if place.sub == PROPOSAL_KEY and proposal is not None and identity not in (None, proposal.by):
        raise Forbidden(f"the freeze proposal of {root!r} is withdrawn only by {proposal.by}")


def judge_task_delete(
    place: Place, index_place: Callable[[tuple[int, int]], Place | None], root: str
) -> None:
    """Raises `Forbidden` for deleting a task's verification requirement."""
    parent = place.parent
    if place.sub != "verify" or not isinstance(parent, tuple):
        return
    holder = index_place(parent)
    if holder is not None and holder.parent == root:
        raise Forbidden("a task's verification requirement is never removed")


def _signed(item: Item, identity: str | None, what: str) -> str:
    """The `by` an entry names; `Forbidden` unless it is the writer's identity (when known)."""
    value = item.value[-1] if item.content == ANY and item.value else None
    by = value.get("by") if isinstance(value, dict) else None
    if not isinstance(by, str):
        raise Forbidden(f'{what} is {{"by": agent, "at": seconds}}')
    if identity is not None and by != identity:
        raise Forbidden(f"{what} is signed by its writer, {identity!r}, not {by!r}")
    return by

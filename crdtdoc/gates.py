"""Review gates: not trusting a single agent's word. The one place the rules are written, read
by task lists and specs on every replica (offline too) and by the hub, which refuses writes
that would forge or skip them (docs/SECURITY.md, "Review gates").

- A task added with `verify=N` counts as done only once N agents *other than those who completed
  it* verified it. A verification is an entry `verifications[str(client id)] = {"by": agent,
  "at": seconds}` written by that client, whose agent the room's registry names; an entry under
  another client's key, or naming another agent, or by an agent who completed the task, does
  not count (and the hub refuses it).
- A spec's freeze may wait for approvals: a proposal `freeze = {"by", "at", "approvers":
  [agents], "quorum": n}`, then entries `approval:<client id> = {"by": agent, "at"}`. The spec
  is frozen once every named approver approved and at least `quorum` agents other than the
  proposer did; the proposer's own approval never counts (nor may it name itself). Approvals are
  counted by the same rule as verifications.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crdtdoc.errors import InvalidValue
from crdtdoc.safe_read import client_id_of

APPROVAL_PREFIX = "approval:"
PROPOSAL_KEY = "freeze"
MAX_REQUIRED = 100
"""The most verifications or approvals a gate may ask for."""


def signed_by(entries: Mapping[str, object], agents: Mapping[int, str]) -> dict[str, str]:
    """key -> agent of the entries that count: written under a client id (`key`, or
    `approval:<id>`) whose registered agent is the one the entry names as `by`."""
    out: dict[str, str] = {}
    for key, value in entries.items():
        client = client_id_of(key.removeprefix(APPROVAL_PREFIX))
        by = value.get("by") if isinstance(value, dict) else None
        if client is not None and isinstance(by, str) and agents.get(client) == by:
            out[key] = by
    return out


def verifiers(
    verifications: Mapping[str, object], agents: Mapping[int, str], completers: Iterable[str]
) -> list[str]:
    """The agents whose verifications count, sorted: signed, and not among the completers."""
    done_by = set(completers)
    return sorted({a for a in signed_by(verifications, agents).values() if a not in done_by})


@dataclass(frozen=True)
class Proposal:
    """A spec's freeze waiting for approvals."""

    by: str
    approvers: tuple[str, ...]  # agents who must all approve
    quorum: int  # approvals needed from agents other than the proposer

    def missing(self, approved: Iterable[str]) -> list[str]:
        """What is still needed, in words (empty: the freeze takes effect). The proposer's own
        approval never counts."""
        have = set(approved) - {self.by}
        out = [f"approval by {a}" for a in self.approvers if a not in have]
        if len(have) < self.quorum:
            out.append(
                f"{self.quorum - len(have)} more approval(s) by anyone but {self.by} "
                "(named approvers count)"
            )
        return out


def proposal_of(value: object) -> Proposal | None:
    """A freeze proposal as recorded, or None if the value is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("by"), str):
        return None
    approvers = value.get("approvers", [])
    quorum = value.get("quorum", 0)
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
        return None
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 0 <= quorum <= MAX_REQUIRED:
        return None
    return Proposal(value["by"], tuple(sorted(set(approvers))), quorum)


def check_required(n: object, what: str) -> int:
    """`n` as a number of verifications or approvals to require."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_REQUIRED:
        raise InvalidValue(f"{what} is a whole number from 0 to {MAX_REQUIRED}, not {n!r}")
    return n

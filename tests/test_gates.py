"""`crdtdoc.gates`: which verifications and approvals count, and what a freeze still waits for;
the one rule every replica and the hub read."""

from __future__ import annotations

import pytest

from crdtdoc.errors import InvalidValue
from crdtdoc.gates import Proposal, check_required, proposal_of, signed_by, verifiers

AGENTS = {11: "alice", 22: "bob", 33: "carol"}


def test_an_entry_counts_only_under_a_client_its_named_agent_registered() -> None:
    entries = {
        "11": {"by": "alice"},  # counts
        "22": {"by": "alice"},  # bob's client, alice's name: forged
        "44": {"by": "dave"},  # a client nobody registered
        "x": {"by": "carol"},  # not a client id
        "33": "carol",  # not an entry
        "approval:33": {"by": "carol"},  # an approval key counts the same way
    }
    assert signed_by(entries, AGENTS) == {"11": "alice", "approval:33": "carol"}


def test_verifiers_leave_out_whoever_completed_the_task() -> None:
    checks = {"11": {"by": "alice"}, "22": {"by": "bob"}, "33": {"by": "carol"}}
    assert verifiers(checks, AGENTS, ["bob"]) == ["alice", "carol"]
    assert verifiers({}, AGENTS, []) == []


def test_a_proposal_says_what_it_still_waits_for() -> None:
    proposal = Proposal("alice", ("bob", "carol"), 2)
    assert proposal.missing([]) == [
        "approval by bob",
        "approval by carol",
        "2 more approval(s) by anyone but alice (named approvers count)",
    ]
    assert proposal.missing(["alice", "bob"]) == [  # the proposer's own approval never counts
        "approval by carol",
        "1 more approval(s) by anyone but alice (named approvers count)",
    ]
    assert proposal.missing(["bob", "carol"]) == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        "x",
        {},
        {"by": 3},
        {"by": "a", "approvers": "bob"},
        {"by": "a", "quorum": -1},
        {"by": "a", "quorum": True},
        {"by": "a", "quorum": 10**9},
        {"by": "a", "approvers": [1]},
    ],
)
def test_a_damaged_proposal_is_no_proposal(value: object) -> None:
    assert proposal_of(value) is None


def test_a_proposal_reads_back_and_requirements_are_bounded() -> None:
    proposal = proposal_of({"by": "a", "approvers": ["c", "b", "b"], "quorum": 1})
    assert proposal == Proposal("a", ("b", "c"), 1)
    assert check_required(0, "verify") == 0
    for bad in (-1, 101, 1.5, True, "2"):
        with pytest.raises(InvalidValue):
            check_required(bad, "verify")

"""Deadlock detection on its own (`crdtdoc.server.wait_graph`): `find_cycle` finds a cycle of
waits only when one passes through the owner asked about (chains, self-waits, cycles it merely
waits into, branches), describes it step by step from that owner, and `deadlock_refusal` turns
it into the `deadlock` refusal a waiter gets."""

from __future__ import annotations

from crdtdoc.server.wait_graph import deadlock_refusal, find_cycle


def lease(name: str) -> tuple[str, str]:
    return ("room", name)


def test_nobody_waiting_or_a_chain_of_waits_is_no_cycle() -> None:
    holders = {lease("L1"): ("b#1", "b"), lease("L2"): ("c#1", "c")}
    assert find_cycle("a#1", holders, []) == []
    waits = [(lease("L1"), "a#1", "a"), (lease("L2"), "b#1", "b")]  # a -> b -> c, c waits not
    assert find_cycle("a#1", holders, waits) == []
    assert find_cycle("b#1", holders, waits) == []
    assert find_cycle("nobody#1", holders, waits) == []


def test_a_wait_for_a_free_lease_is_no_edge() -> None:
    holders = {lease("L1"): ("b#1", "b")}
    waits = [(lease("free"), "a#1", "a"), (lease("L1"), "a#1", "a")]
    assert find_cycle("a#1", holders, waits) == []


def test_waiting_for_a_lease_one_holds_oneself_is_a_cycle_of_one() -> None:
    holders = {lease("L"): ("a#1", "a")}
    cycle = find_cycle("a#1", holders, [(lease("L"), "a#1", "a")])
    assert cycle == ["a waits for 'L' held by a"]


def test_another_client_of_the_same_agent_is_another_owner() -> None:
    """Owners are agent#client: a second client of `a` waiting for its first client's lease
    waits for someone else, not for itself."""
    holders = {lease("L"): ("a#1", "a")}
    assert find_cycle("a#2", holders, [(lease("L"), "a#2", "a")]) == []


def test_a_three_way_cycle_is_described_from_the_owner_asked_about() -> None:
    holders = {lease("L1"): ("b#1", "b"), lease("L2"): ("c#1", "c"), lease("L3"): ("a#1", "a")}
    waits = [(lease("L1"), "a#1", "a"), (lease("L2"), "b#1", "b"), (lease("L3"), "c#1", "c")]
    assert find_cycle("a#1", holders, waits) == [
        "a waits for 'L1' held by b",
        "b waits for 'L2' held by c",
        "c waits for 'L3' held by a",
    ]
    assert find_cycle("c#1", holders, waits) == [
        "c waits for 'L3' held by a",
        "a waits for 'L1' held by b",
        "b waits for 'L2' held by c",
    ]


def test_an_owner_waiting_into_a_cycle_is_not_on_it() -> None:
    holders = {lease("L1"): ("b#1", "b"), lease("L2"): ("c#1", "c")}
    waits = [(lease("L1"), "a#1", "a"), (lease("L2"), "b#1", "b"), (lease("L1"), "c#1", "c")]
    assert find_cycle("a#1", holders, waits) == []  # a -> b <-> c: terminates, a not on it
    assert find_cycle("b#1", holders, waits) == [
        "b waits for 'L2' held by c",
        "c waits for 'L1' held by b",
    ]


def test_a_dead_end_branch_is_dropped_from_the_description() -> None:
    """a waits for two leases: the one whose holder waits for nobody leaves no step behind."""
    holders = {lease("dead"): ("d#1", "d"), lease("L1"): ("b#1", "b"), lease("L2"): ("a#1", "a")}
    waits = [(lease("dead"), "a#1", "a"), (lease("L1"), "a#1", "a"), (lease("L2"), "b#1", "b")]
    assert find_cycle("a#1", holders, waits) == [
        "a waits for 'L1' held by b",
        "b waits for 'L2' held by a",
    ]


def test_a_waiter_that_holds_nothing_is_named_by_its_agent() -> None:
    holders = {lease("L1"): ("b#1", "b"), lease("L2"): ("x#9", "xavier")}
    waits = [(lease("L1"), "x#9", "xavier"), (lease("L2"), "b#1", "b")]
    assert find_cycle("x#9", holders, waits)[0] == "xavier waits for 'L1' held by b"


def test_a_deadlock_refusal_carries_its_code_message_and_cycle() -> None:
    cycle = ["a waits for 'L1' held by b", "b waits for 'L2' held by a"]
    refusal = deadlock_refusal(cycle)
    assert refusal.code == "deadlock"
    assert str(refusal) == (
        "waiting would deadlock: a waits for 'L1' held by b; b waits for 'L2' held by a"
    )
    assert refusal.details == {"cycle": cycle}
    single = deadlock_refusal(["a waits for 'L' held by a"])
    assert str(single) == "waiting would deadlock: a waits for 'L' held by a"

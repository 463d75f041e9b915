"""The coordination rules on their own (`crdtdoc.server.coordination_rules`), no hub: who a
`Caller` is with and without a secret, what a read-only token may ask, which task claims a scoped
token may make, who counts as a lease's holder, who sees a lease's token, and every reason a
fenced write is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from crdtdoc.artifacts.tasks import task_lease_name
from crdtdoc.protocol.requests import Acquire, ListLeases, NextNumber, Release, RequestError
from crdtdoc.server.coordination_rules import READ_ONLY_REFUSED, Caller, fence_refusal
from crdtdoc.tokens import Grant

WRITER = Grant("tokname", "*")


def test_a_caller_without_a_secret_is_the_hello_name_and_may_do_anything() -> None:
    caller = Caller.of(SimpleNamespace(grant=None, identity=None), "ann")
    assert caller == Caller("ann", authenticated=False, read_only=False, artifacts=None)


def test_a_caller_with_a_secret_is_its_token_s_identity_never_the_hello_name() -> None:
    scoped = Grant("tokname", "*", read_only=True, artifacts=frozenset({"notes"}))
    caller = Caller.of(SimpleNamespace(grant=scoped, identity="verified"), "hello-name")
    assert caller == Caller("verified", True, True, frozenset({"notes"}))
    # No identity on the connection: the grant's own agent, still not the hello name.
    fallback = Caller.of(SimpleNamespace(grant=WRITER, identity=None), "hello-name")
    assert (fallback.agent, fallback.authenticated, fallback.read_only) == ("tokname", True, False)


@pytest.mark.parametrize("op", sorted(READ_ONLY_REFUSED))
def test_a_read_only_token_may_not_change_coordination_state(op: str) -> None:
    reader = Caller("rita", authenticated=True, read_only=True)
    with pytest.raises(RequestError) as refused:
        reader.check_may(op)
    assert refused.value.code == "forbidden"
    assert str(refused.value) == f"'rita' has a read-only token: it may not {READ_ONLY_REFUSED[op]}"
    Caller("wes", authenticated=True, read_only=False).check_may(op)  # a writer may


@pytest.mark.parametrize("op", ["leases", "status", "commit", "steal", 7, None])
def test_a_read_only_token_passes_what_changes_no_coordination_state(op: object) -> None:
    Caller("rita", authenticated=True, read_only=True).check_may(op)  # left to later checks


def test_a_scoped_token_claims_only_tasks_of_its_artifacts() -> None:
    scoped = Caller("sam", True, False, frozenset({"backlog", "bugs"}))
    scoped.check_scope(Acquire(task_lease_name("backlog", "t1"), 30))
    with pytest.raises(RequestError) as refused:
        scoped.check_scope(Acquire(task_lease_name("secret", "t1"), 30))
    assert refused.value.code == "forbidden"
    assert str(refused.value) == (
        "'sam' may change only backlog, bugs: it may not claim tasks of 'secret'"
    )
    # Plain leases, and requests that are no acquire, are not task claims.
    scoped.check_scope(Acquire("deploy", 30))
    scoped.check_scope(Acquire("task/secret", 30))  # no task id: not a claim's lease
    scoped.check_scope(Release(task_lease_name("secret", "t1"), 1))
    scoped.check_scope(NextNumber("n"))
    scoped.check_scope(ListLeases())
    Caller("any", True, False, None).check_scope(Acquire(task_lease_name("secret", "t1"), 30))


def test_only_the_holding_agent_passes_check_holder() -> None:
    ann = Caller("ann", authenticated=True, read_only=False)
    ann.check_holder("L", "ann", "ann#1", None, "renew")
    ann.check_holder("L", "ann", "ann#1", 2, "renew")  # with a token, any of its connections
    with pytest.raises(RequestError) as refused:
        ann.check_holder("L", "bob", "bob#1", None, "release")
    assert (refused.value.code, refused.value.details) == ("forbidden", {"holder": "bob"})
    assert str(refused.value) == (
        "lease 'L' is held by bob, not by ann: only its holder may release it"
    )


def test_without_a_secret_a_named_client_must_be_the_one_that_acquired() -> None:
    ann = Caller("ann", authenticated=False, read_only=False)
    ann.check_holder("L", "ann", "ann#7", 7, "renew")
    ann.check_holder("L", "ann", "ann#7", None, "renew")  # no client named: the agent suffices
    with pytest.raises(RequestError) as refused:
        ann.check_holder("L", "ann", "ann#7", 8, "renew")
    assert (refused.value.code, refused.value.details) == ("forbidden", {"holder": "ann"})
    assert str(refused.value) == (
        "lease 'L' was taken by another client of ann than client 8: only that client may renew it"
    )


def test_a_lease_s_token_is_shown_to_its_holder_alone() -> None:
    ann = Caller("ann", authenticated=True, read_only=True)  # read-only may still look
    assert ann.sees_token("ann")
    assert not ann.sees_token("bob")
    assert not ann.sees_token("Ann")


def test_a_fenced_write_passes_only_with_the_newest_token_of_its_holder() -> None:
    assert fence_refusal("L", 3, 3, "ann", "ann") is None
    assert fence_refusal("L", 1, 1, "ann", "ann") is None


@pytest.mark.parametrize(
    ("token", "newest", "holder", "writer", "why"),
    [
        (1, 0, None, "ann", "fencing token 1 was never issued for lease 'L' (it was never taken)"),
        (0, 0, None, "ann", "fencing token 0 was never issued for lease 'L' (it was never taken)"),
        (4, 3, "ann", "ann", "fencing token 4 was never issued for lease 'L'"),  # made up
        (0, 3, "ann", "ann", "fencing token 0 was never issued for lease 'L'"),
        (-1, 3, "ann", "ann", "fencing token -1 was never issued for lease 'L'"),
        (
            2,
            3,
            "bob",
            "ann",
            "lease 'L' changed hands after fencing token 2 (now held by bob); "
            "this write carries that older token",
        ),
        (
            2,
            3,
            None,
            "ann",
            "lease 'L' changed hands after fencing token 2; this write carries that older token",
        ),
        (
            3,
            3,
            None,
            "ann",
            "lease 'L' is not held any more (released, or its time ran out): take it again",
        ),
        (
            3,
            3,
            "bob",
            "ann",
            "lease 'L' is held by bob, not by ann: only its holder fences with it",
        ),
        (  # an unnamed writer never matches an unheld lease
            3,
            3,
            None,
            None,
            "lease 'L' is not held any more (released, or its time ran out): take it again",
        ),
    ],
)
def test_every_refused_fence_says_why(
    token: int, newest: int, holder: str | None, writer: str | None, why: str
) -> None:
    assert fence_refusal("L", token, newest, holder, writer) == why

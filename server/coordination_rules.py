"""What a coordination request may ask, and who may ask it: the same rules on one hub and on
several (`crdtdoc.server.coordination.Coordinator` applies them before any operation runs).

Every request is authorized against its connection (`Caller`): a read-only token takes, renews
and releases no lease and draws no number; only a lease's holder renews or releases it; `leases`
shows a lease's token to its holder alone; and a fenced write passes only with the newest token
actually issued for its lease (`fence_refusal`: never one above it, so a made-up token fails).
Who the holder is depends on what the hub can verify, see `Caller` and docs/SECURITY.md. The
arguments are read and bounded by `crdtdoc.protocol.requests`; a refusal is a `RequestError`,
whose code and message go back in the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from crdtdoc.artifacts.tasks import task_of_lease
from crdtdoc.protocol.extension import Reply
from crdtdoc.protocol.requests import Acquire, CoordinationRequest, ReplyCode, RequestError
from crdtdoc.tokens import Grant

Key = tuple[str, str]  # (room, lease or sequence name)


def ok_reply(request_id: int, **result: Any) -> Reply:
    return Reply(request_id, result)


class Requester(Protocol):
    """What a coordinator needs of the connection a request came on (a
    `crdtdoc.server.peer.Peer`)."""

    @property
    def grant(self) -> Grant | None:
        """What its token allows; None when the hub has no secret."""

    @property
    def identity(self) -> str | None:
        """The agent its token names; None when the hub has no secret."""


READ_ONLY_REFUSED = {
    "acquire": "take leases",
    "renew": "renew leases",
    "release": "release leases",
    "next": "draw numbers",
}
"""Operations a read-only token may not send (they change coordination state), described."""


@dataclass(frozen=True)
class Caller:
    """Who sent a coordination request, as far as the hub can tell.

    With a secret, `agent` is the identity in the connection's signed token: unforgeable, and the
    whole of who holds a lease (the same identity may renew from any of its connections, so a
    holder that reconnects, or fails over to another hub, keeps its lease). Without a secret,
    `agent` is the name the client gave in hello and the client id it acquired under is its own
    claim too: both only tell honest agents apart (they stop mistakes, not a client that lies,
    as the hub trusts every client in that mode). The connection itself is not part of the
    holder in either mode: a holder must keep renewing across a reconnect."""

    agent: str
    authenticated: bool  # `agent` comes from a token checked against the hub's secret
    read_only: bool
    artifacts: frozenset[str] | None = None  # the artifacts its token may change (None: all)

    @classmethod
    def of(cls, peer: Requester, agent: str) -> Caller:
        """The caller behind `peer`; `agent` is the name it gave in hello."""
        grant = peer.grant
        if grant is None:
            return cls(agent, authenticated=False, read_only=False)
        identity = peer.identity if peer.identity is not None else grant.agent
        return cls(identity, True, grant.read_only, grant.artifacts)

    def check_may(self, op: object) -> None:
        """Raises `forbidden` when a read-only token asks for an operation that changes state,
        whatever its arguments (checked before they are read)."""
        what = READ_ONLY_REFUSED.get(op) if isinstance(op, str) else None
        if self.read_only and what is not None:
            raise RequestError(
                ReplyCode.FORBIDDEN, f"{self.agent!r} has a read-only token: it may not {what}"
            )

    def check_scope(self, request: CoordinationRequest) -> None:
        """Raises `forbidden` when a token scoped to some artifacts claims a task of a list
        outside them (the claim's record could not be written, and the lease alone would lock
        the task)."""
        task = task_of_lease(request.name) if isinstance(request, Acquire) else None
        if task is not None and self.artifacts is not None and task[0] not in self.artifacts:
            raise RequestError(
                ReplyCode.FORBIDDEN,
                f"{self.agent!r} may change only {', '.join(sorted(self.artifacts))}: it may "
                f"not claim tasks of {task[0]!r}",
            )

    def check_holder(
        self, name: str, holder: str, owner: str, client: int | None, action: str
    ) -> None:
        """Raises `forbidden` unless this caller holds lease `name` (held by agent `holder`,
        owned by `owner` = "agent#client"). Without a secret, a `client` in the request must
        also be the one that acquired it."""
        if holder != self.agent:
            raise RequestError(
                ReplyCode.FORBIDDEN,
                f"lease {name!r} is held by {holder}, not by {self.agent}: "
                f"only its holder may {action} it",
                holder=holder,
            )
        if self.authenticated or client is None:
            return
        if owner != f"{holder}#{client}":
            raise RequestError(
                ReplyCode.FORBIDDEN,
                f"lease {name!r} was taken by another client of {holder} than client {client}: "
                f"only that client may {action} it",
                holder=holder,
            )

    def sees_token(self, holder: str) -> bool:
        """Whether `leases` may show this caller the token of a lease `holder` holds (a token
        is what renew and release present, so only its holder sees it)."""
        return holder == self.agent


def fence_refusal(
    name: str, token: int, newest: int, holder: str | None, writer: str | None
) -> str | None:
    """Why a write by agent `writer` fenced with `token` for lease `name` is refused, or None if
    it may pass.

    `newest` is the newest fencing token issued for the name (0: none yet), `holder` the agent
    holding the lease now, if any. A fenced write passes only while its writer holds the lease
    under that token: an older token belongs to a holder that lost the lease, one above it was
    never issued (made up, or from another hub's database), and a lease released, run out or
    held by another agent fences nobody's writes."""
    if 1 <= token == newest and holder is not None and holder == writer:
        return None
    if newest == 0:
        return f"fencing token {token} was never issued for lease {name!r} (it was never taken)"
    if not 1 <= token <= newest:
        return f"fencing token {token} was never issued for lease {name!r}"
    if token < newest:
        who = f" (now held by {holder})" if holder is not None else ""
        return (
            f"lease {name!r} changed hands after fencing token {token}{who}; this write carries "
            "that older token"
        )
    if holder is None:
        return f"lease {name!r} is not held any more (released, or its time ran out): take it again"
    return f"lease {name!r} is held by {holder}, not by {writer}: only its holder fences with it"

"""The MCP server's session: the agent's connected replica, what it last looked at, the leases
behind its claims, and how its writes travel (`Session.writing`, `Session.written`); shared by
the server's tool modules (`crdtdoc.mcp_server`, `crdtdoc.mcp_history`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from crdtdoc.changes import Change
from crdtdoc.client.connection import ConnectedReplica
from crdtdoc.client.coordination import Lease
from crdtdoc.errors import FencedOut, NotConnected, SyncTimeout
from crdtdoc.versions import Version


class Session:
    """The agent's replica and what it last looked at."""

    def __init__(self, replica: ConnectedReplica, write_timeout: float = 30.0) -> None:
        self.replica = replica
        self.write_timeout = write_timeout
        self.last_look: Version = replica.version()
        self.last_read: dict[str, str] = {}  # document -> its text when this agent last read it
        self.claims: dict[tuple[str, str], Lease] = {}  # (list, task) -> the hub lease behind it
        self.leases: dict[str, Lease] = {}  # leases the agent took with acquire_lease, by name

    def others_since_last_look(self) -> list[Change]:
        """What other agents changed since this agent last looked (`changes_since_last_look`)."""
        return self.replica.changes_by_others(self.last_look, (), self.replica.client_id)

    async def unclaim(self, name: str, task_id: str) -> bool:
        """Releases the lease behind this session's claim of the task (which drops the claim);
        returns whether there was one."""
        lease = self.claims.pop((name, task_id), None)
        if lease is None:
            return False
        await lease.release()
        return True

    @asynccontextmanager
    async def writing(self, fence: str | None = None) -> AsyncIterator[None]:
        """Where a tool's writes happen. Connected, they travel as one guarded commit the hub
        decides: refused at once if larger than the hub accepts, or (with `fence`, the name of
        a lease this session holds) once that lease is no longer current, and undone here when
        refused. Offline, they are kept here and sent when the hub answers."""
        lease = None
        if fence is not None:
            lease = self.leases.get(fence)
            if lease is None or not lease.held:
                raise FencedOut(
                    f"this session holds no lease {fence!r}"
                    + (" any more (it was lost)" if lease is not None else "")
                    + ": take it with acquire_lease first; nothing was written"
                )
        if lease is None and not self.replica.synced:
            with self.replica.transaction():
                yield
            return
        async with self.replica.commit(fence=lease):
            yield

    async def written(self, what: str) -> str:
        """`what` happened, once the hub stored it: with the version that holds it. If the hub
        does not confirm in time, the change is still made here and will be sent: the answer
        says so, and is not an error, so an agent does not repeat it (a second `add_task`
        would add a second task)."""
        try:
            await self.replica.flush(timeout=self.write_timeout)
        except (SyncTimeout, NotConnected) as exc:
            return (
                f"{what}, in this session; NOT yet confirmed stored by the hub ({exc}). The "
                "change is kept and sent when the hub answers: do not repeat it; call version or "
                "wait_for later to see it stored"
            )
        return f"{what}; version {self.replica.version().token()}"


def known(replica: ConnectedReplica, name: str, kind: str) -> None:
    """`Replica.require` for readers while the session is synced: offline, what the session
    holds is all it can say (the answer then says it is offline)."""
    if replica.synced:
        replica.require(name, kind)


ToolFn = Callable[..., Awaitable[str]]

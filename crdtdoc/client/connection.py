"""The connected replica: a `Replica` kept in sync with a hub room by a task on the event loop.

`async with crdtdoc.connect(url, agent=...) as replica:` gives a `ConnectedReplica`. It holds a
`HubLink` (`crdtdoc.client.link`) that keeps one websocket connection to the room open,
reconnecting with backoff and jitter, and decides nothing itself: the protocol state lives in a
`ClientSession` (`crdtdoc.protocol.client_session`). What the async and the blocking replica
share is `LinkedReplica`; this module adds what needs the event loop: waiting (`flush`,
`wait_for`), guarded and fenced commits decided by the hub, and leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from crdtdoc.client.coordination import Fencing, Lease, LeaseInfo
from crdtdoc.client.link import HubLink
from crdtdoc.client.linked_replica import Keep, LinkedReplica, LinkOptions
from crdtdoc.client.provenance_reads import read_provenance
from crdtdoc.client.urls import room_url, room_urls
from crdtdoc.errors import CrdtdocError, FencedOut, LeaseHeld, NotConnected, SyncTimeout, UsageError
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.requests import Acquire, Commit, ListLeases, NextNumber, OutgoingRequest
from crdtdoc.provenance import Provenance
from crdtdoc.replica import Replica, ReplicaLimits
from crdtdoc.versions import Version

__all__ = [
    "ConnectedReplica",
    "HubLink",
    "Keep",
    "LinkOptions",
    "LinkedReplica",
    "connect",
    "room_url",
    "room_urls",
]


class _LeaseContext:
    def __init__(self, replica: ConnectedReplica, name: str, ttl: float, wait: float) -> None:
        self._args = (replica, name, ttl, wait)
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        replica, name, ttl, wait = self._args
        self._lease = await replica.acquire(name, ttl=ttl, wait=wait)
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.release()


class ConnectedReplica(LinkedReplica):
    """A `Replica` synced with a hub room by a task on the running event loop.

    Use `async with crdtdoc.connect(url, agent=...) as replica:`; every `Replica` method works as
    usual, and the replica stays in sync in the background.
    """

    def __init__(self, url: str | Sequence[str], agent: str, options: LinkOptions) -> None:
        self._changed: asyncio.Event | None = None  # set by the loop whenever something arrives
        super().__init__(url, agent, options)
        self._hold_lock: asyncio.Lock | None = None
        self._pending_fence: asyncio.Task[None] | None = None
        self.fenced_out: FencedOut | None = None  # set when a fenced transaction was refused

    def _activity(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def __aenter__(self) -> ConnectedReplica:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Opens the link; with `wait_synced` (the default), waits for the first sync and raises
        `NotConnected` if the hub cannot be reached within `open_timeout`."""
        self._changed = asyncio.Event()
        self._link.start()
        if self._wait_synced:
            try:
                started = time.monotonic()
                await self._wait_until(self._reachable, self._connect_timeout, "no connection")
                left = self._open_timeout - (time.monotonic() - started)
                await self._wait_until(self._opened, max(left, 0.0), "no sync")
            except SyncTimeout:
                await self.close()
                raise self._unreachable() from None
            if self.admission is not None:
                await self.close()
                raise self.admission

    async def close(self) -> None:
        """Sends what is queued, says goodbye, and closes the link (the replica stays usable)."""
        await self._link.stop()
        self._close_journal()

    async def flush(self, timeout: float = 30.0) -> Version:
        """Returns once the hub has durably stored everything this replica holds now (every
        local change made so far); returns the durable version. Raises `SyncTimeout`, or
        `HubStorageError` at once while the hub says its store cannot commit (nothing is lost:
        call again later)."""
        if self._pending_fence is not None:  # a fenced write first gets its answer
            await asyncio.shield(self._pending_fence)
        if self.fenced_out is not None:
            refused, self.fenced_out = self.fenced_out, None
            raise refused
        await self._raise_refused_once_resynced(timeout)
        target = self.version()
        await self._wait_until(
            lambda: self._flush_done(target), timeout, "the hub did not confirm durable storage"
        )
        await self._raise_refused_once_resynced(timeout)  # refused while waiting: reset
        self._raise_store_error(target)
        return self.durable

    async def _raise_refused_once_resynced(self, timeout: float) -> None:
        """Raises a pending `Refused` once the reset replica holds the hub's state again (or
        `timeout` passed): an agent that then reads and redoes its work sees what the hub
        has, not an empty replica (a redo diffed against nothing would duplicate it all)."""
        if self.refused is None:
            return
        with contextlib.suppress(CrdtdocError):
            await self._wait_until(lambda: self.synced, timeout, "no resync after a refusal")
        self._raise_refused()

    @contextlib.asynccontextmanager
    async def commit(
        self,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        *,
        fence: Fencing | None = None,
        note: str | None = None,
    ) -> AsyncIterator[None]:
        """A guarded commit decided by the hub: the block's changes travel as one update that
        the hub applies only if no artifact in `on` (all when empty) changed since `expect`,
        and only if `fence` (a lease) is still current. Otherwise nothing is applied anywhere,
        this replica included, and `Conflict` / `FencedOut` is raised at the end of the block.
        """
        expect = self._fresh_expect(expect, on)
        lock = self._hold_lock = self._hold_lock or asyncio.Lock()
        async with lock:
            if self._pending_fence is not None:
                await asyncio.shield(self._pending_fence)
            self._begin_hold()
            try:
                with Replica.transaction(self, note=note):
                    yield
            except BaseException:
                self._rollback_hold()
                raise
            await self._submit_hold(expect, on, fence)

    async def wait_for(self, version: Version | str, timeout: float | None = None) -> None:
        """Returns once this replica has everything in `version` (a `Version` or its token)."""
        target = Version.from_token(version) if isinstance(version, str) else version
        await self._wait_until(
            lambda: target <= self.version(),
            timeout,
            "this replica did not receive everything in that version",
        )

    async def _wait_until(
        self, check: Callable[[], bool], timeout: float | None, what: str
    ) -> None:
        changed = self._changed
        if changed is None:
            raise NotConnected("the replica is not started: use `async with crdtdoc.connect(...)`")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not check():
            changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._timeout_error(what, timeout or 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # -- coordination through the hub -----------------------------------------------------

    async def acquire(self, name: str, ttl: float = 30.0, wait: float = 0.0) -> Lease:
        """Takes the lease `name` through the hub, waiting up to `wait` seconds in a fair queue.

        Raises `LeaseHeld` (naming the holder), `Deadlock` (naming the cycle) when waiting would
        close a cycle of waits, `NotConnected` without a link. The lease renews itself while
        this replica lives; a crashed holder loses it once `ttl` runs out."""
        asked = Acquire(name, ttl, wait, self.client_id)
        result = await self.ask(asked, timeout=wait + 30.0)
        return Lease(self, name, int(result["token"]), float(result["ttl"]))

    async def provenance(self) -> Provenance:
        """What the hub recorded, with each write it stored, of what its writer can have seen
        (`crdtdoc.provenance`): pass it to `built_on` or `descendants`."""
        return await read_provenance(self.ask)

    async def ask(self, request: OutgoingRequest, timeout: float = 30.0) -> dict[str, Any]:
        """Sends one typed request (`crdtdoc.protocol.requests`) to the hub and returns its
        result; raises its typed refusal (`LeaseHeld`, `Forbidden`, ...), or `NotConnected`
        without a link."""
        return await self._request(request.op, request.to_args(), timeout)

    async def claim_task(self, task_list: str, task_id: str, ttl: float = 60.0) -> Lease:
        """Claims a task exclusively, through a hub lease: of many agents racing for one task
        exactly one wins; the others get `AlreadyClaimed` naming the holder. The claim shows in
        the task list; releasing the returned lease removes it, and if the lease expires (the
        holder died) the hub removes it and the task is open again."""
        tasks = self.tasks(task_list)
        tasks.claimable(task_id)
        try:
            lease = await self.acquire(tasks.lease_name(task_id), ttl=ttl)
        except LeaseHeld as held:
            raise tasks.claimed_by(task_id, held.holder) from None
        me = self.agent
        try:
            tasks.record_claim(task_id, lease.token)
        except BaseException:  # not recorded: not held either (the error says why, not this)
            with contextlib.suppress(CrdtdocError):
                await lease.release()
            raise

        async def drop_claim() -> None:
            self.tasks(task_list).drop_claim(task_id, me)

        lease.on_release(drop_claim)
        return lease

    def lease(self, name: str, ttl: float = 30.0, wait: float = 0.0) -> _LeaseContext:
        """`async with replica.lease(name, ttl=..., wait=...) as lease:` holds it for the block."""
        return _LeaseContext(self, name, ttl, wait)

    async def leases(self) -> list[LeaseInfo]:
        """Every lease held in this room: who holds it, its token, who waits for it."""
        result = await self.ask(ListLeases())
        return [LeaseInfo(**entry) for entry in result.get("leases", [])]

    async def next_number(self, sequence: str) -> int:
        """The next number of `sequence`: strictly increasing and never handed out twice, also
        across hub restarts (recorded before it is returned)."""
        asked = NextNumber(sequence)
        return int((await self.ask(asked))["value"])

    @contextmanager
    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
        fence: Fencing | None = None,
    ) -> Iterator[None]:
        """`Replica.transaction`, plus `fence=lease`: the hub applies the block's changes only
        while the lease's fencing token is current. A refused write is undone here too, and
        `FencedOut` is raised by the next `flush()` (and kept in `fenced_out`). One fenced
        write at a time: await `flush()` before the next."""
        if fence is None or self._txn_depth:
            with super().transaction(expect=expect, on=on, note=note):
                yield
            return
        if self._held.active:
            raise UsageError("a guarded write is still in flight; await replica.flush() first")
        self._begin_hold()
        try:
            with super().transaction(expect=expect, on=on, note=note):
                yield
        except BaseException:
            self._rollback_hold()
            raise
        self._pending_fence = asyncio.get_running_loop().create_task(self._settle_fenced(fence))

    async def _settle_fenced(self, fence: Fencing) -> None:
        try:
            await self._submit_hold(None, (), fence)
        except FencedOut as exc:
            self.fenced_out = exc
        except CrdtdocError as exc:
            self.fenced_out = FencedOut(f"the fenced write was not confirmed: {exc}")
        finally:
            self._pending_fence = None
            self._activity()

    async def _submit_hold(
        self, expect: Version | None, on: Iterable[object], fence: Fencing | None
    ) -> None:
        """Sends the held updates as one guarded commit and settles them by the answer."""
        try:
            held, args = self._hold_request(expect, on, fence)
            if args is None:
                return
            await self._request(Commit.op, args)
        except BaseException:
            self._rollback_hold()  # refused, or the outcome is unknown: undo (a fresh id)
            raise
        self._settle_hold(held)


def connect(
    url: str | Sequence[str],
    agent: str,
    *,
    token: str | None = None,
    client_id: int | None = None,
    state_file: str | None = None,
    status: str = "active",
    wait_synced: bool = True,
    open_timeout: float = 10.0,
    backoff: Backoff | None = None,
    limits: ReplicaLimits | None = None,
    history: bool = False,
) -> ConnectedReplica:
    """A replica of the room at `url` (`ws://HOST:PORT/<room>`) kept in sync with the hub.

    `async with crdtdoc.connect(url, agent="alice") as replica:` syncs, then yields the replica.
    `state_file` keeps local data on disk across a crash of the agent; `wait_synced=False` starts
    without waiting for the hub (offline work is sent when the link comes up).

    `url` may be a list of URLs of hubs that share one PostgreSQL store (docs/SCALING.md): the
    replica uses the first, and when a link fails it moves on to the next, so an agent survives
    the death of its hub. What any hub acknowledged as durable is in the shared store.

    `history=True` keeps what was deleted, for `at`, `history`, `Document.blame` and `revert`
    (the hub keeps history unless started with `--no-history`).
    """
    options = LinkOptions(
        history=history,
        token=token,
        client_id=client_id,
        limits=limits,
        state_file=state_file,
        status=status,
        backoff=backoff,
        open_timeout=open_timeout,
        wait_synced=wait_synced,
    )
    return ConnectedReplica(url, agent, options)

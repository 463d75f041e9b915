"""`BlockingReplica`: the connected replica for agents that are plain (non-async) scripts.

The websocket link runs on an event loop in a background thread; the replica itself stays in the
caller's thread, because a pycrdt document must not be used from two threads at once. Updates
from the hub wait in an inbox and are applied whenever the caller uses the replica (any artifact
call, `version()`, `transaction()`...), and in `flush`, `wait_for` and `poll`. So a script sees
its peers' changes the moment it looks, and nothing changes under it while it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from crdtdoc.client.coordination import Fencing
from crdtdoc.client.linked_replica import LinkedReplica, LinkOptions
from crdtdoc.client.provenance_reads import read_provenance
from crdtdoc.errors import InvalidValue, NotConnected, Refused, UsageError
from crdtdoc.protocol.messages import Message
from crdtdoc.protocol.requests import Commit, ReadProvenance, RequestError, read_request
from crdtdoc.provenance import Provenance
from crdtdoc.replica import Replica
from crdtdoc.versions import Version

T = TypeVar("T")


class BlockingReplica(LinkedReplica):
    """A `Replica` synced with a hub room, for synchronous code (see the module docstring).

    `commit()` is a guarded write the hub decides, waiting for its answer; `request()` sends a
    coordination request. Leases that renew themselves need the async `crdtdoc.connect`."""

    def __init__(self, url: str | Sequence[str], agent: str, options: LinkOptions) -> None:
        self._owner = threading.get_ident()
        self._inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._arrived = threading.Event()
        self._pumping = False
        self._refusal: Refused | None = None
        self._loop = asyncio.new_event_loop()
        super().__init__(url, agent, options)
        self._thread = threading.Thread(target=self._run_loop, name="crdtdoc-link", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        if options.wait_synced:
            try:
                started = time.monotonic()
                self._wait_until(self._reachable, self._connect_timeout, "no connection")
                left = options.open_timeout - (time.monotonic() - started)
                self._wait_until(self._opened, max(left, 0.0), "no sync")
            except TimeoutError:
                self.close()
                raise self._unreachable() from None
            if self.admission is not None:
                self.close()
                raise self.admission

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _start(self) -> None:
        self._link.start()

    # -- hooks -----------------------------------------------------------------------------

    def _deliver_sync(self, message: Message) -> None:
        self._inbox.put(message)

    def _activity(self) -> None:
        self._arrived.set()

    def _on_refused(self, refused: Refused) -> None:
        self._refusal = refused  # the reset happens in the owning thread
        self._arrived.set()

    def _sync_point(self) -> None:
        if (
            self._pumping
            or self._txn_depth
            or self._notifying
            or threading.get_ident() != self._owner
        ):
            return
        self._pumping = True
        try:
            if self._refusal is not None:
                refusal, self._refusal = self._refusal, None
                self._reset_to_hub(refusal)
            while True:
                try:
                    message = self._inbox.get_nowait()
                except queue.Empty:
                    return
                self._apply_from_hub(message)
        finally:
            self._pumping = False

    # -- the blocking API ------------------------------------------------------------------

    def poll(self) -> None:
        """Applies whatever the hub has sent so far (every other call does this too)."""
        self._sync_point()

    def flush(self, timeout: float = 30.0) -> Version:
        """Returns once the hub has durably stored everything this replica holds now; returns
        the durable version. Raises `SyncTimeout`, or `HubStorageError` while the hub says its
        store cannot commit (nothing is lost: call again later)."""
        target = self.version()
        self._raise_refused()
        self._wait_until(
            lambda: self._flush_done(target), timeout, "the hub did not confirm durable storage"
        )
        self._raise_refused()
        self._raise_store_error(target)
        return self.durable

    def request(self, op: str, args: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """One coordination request decided by the hub (`acquire`, `renew`, `release`, `next`:
        PROTOCOL.md section 10), blocking; raises its typed refusal. For callers that hold no
        lease object across calls, like the command line."""
        self._sync_point()
        try:  # checked here as the hub would: a bad name fails before anything is sent
            asked = read_request(op, args)
        except RequestError as exc:
            raise InvalidValue(str(exc)) from None
        return self._on_loop(self._request(asked.op, asked.to_args(), timeout=timeout))

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` on the link's loop and waits for it; `NotConnected` once closed."""
        if self._loop.is_closed():
            work.close()
            raise NotConnected("this replica is closed: connect again")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def provenance(self, timeout: float = 60.0) -> Provenance:
        """What the hub recorded, with each write it stored, of what its writer can have seen
        (`crdtdoc.provenance`), blocking: pass it to `built_on` or `descendants`. `timeout`:
        seconds per page asked for."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UsageError(f"timeout is a positive number of seconds, not {timeout!r}")
        self._sync_point()

        async def ask(request: ReadProvenance) -> dict[str, Any]:
            return await self._request(request.op, request.to_args(), timeout=timeout)

        return self._on_loop(read_provenance(ask))

    @contextmanager
    def commit(
        self,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        *,
        fence: Fencing | None = None,
        note: str | None = None,
    ) -> Iterator[None]:
        """A guarded write decided by the hub, as `ConnectedReplica.commit`: the block's
        changes are applied only if no artifact in `on` (all when empty) changed since `expect`
        and `fence` (a lease's name and token) is still current; otherwise they are undone here
        too and `Conflict` / `FencedOut` is raised when the block ends. Returns once the hub
        answered: a write that races this one is judged by the hub, not by this replica."""
        self._sync_point()
        expect = self._fresh_expect(expect, on)
        if self._held.active or self._txn_depth:
            raise UsageError("a guarded write cannot run inside another write")
        self._begin_hold()
        try:
            with Replica.transaction(self, note=note):
                yield
        except BaseException:
            self._rollback_hold()
            raise
        try:
            held, args = self._hold_request(expect, on, fence)
            if args is None:
                return
            call = self._request(Commit.op, args)
            asyncio.run_coroutine_threadsafe(call, self._loop).result()
        except BaseException:
            self._rollback_hold()  # refused, or the outcome is unknown: undo (a fresh id)
            raise
        self._settle_hold(held)

    @contextmanager
    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
        fence: Fencing | None = None,
    ) -> Iterator[None]:
        """`Replica.transaction`; a fenced write is `commit(fence=...)` here, which returns
        once the hub answered (`fence=` inside another transaction joins it, unfenced)."""
        if fence is not None and not self._txn_depth:
            raise UsageError(
                "a blocking replica fences with `with replica.commit(fence=...)`, which waits "
                "for the hub's answer"
            )
        with super().transaction(expect=expect, on=on, note=note):
            yield

    def wait_for(self, version: Version | str, timeout: float | None = None) -> None:
        """Returns once this replica has everything in `version` (a `Version` or its token)."""
        target = Version.from_token(version) if isinstance(version, str) else version
        self._wait_until(
            lambda: target <= self.version(),
            timeout,
            "this replica did not receive everything in that version",
        )

    def _wait_until(self, check: Callable[[], bool], timeout: float | None, what: str) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._arrived.clear()
            self._sync_point()
            if check():
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._timeout_error(what, timeout or 0.0)
            self._arrived.wait(0.5 if remaining is None else min(remaining, 0.5))

    def close(self) -> None:
        """Sends what is queued, says goodbye, closes the link, and stops the thread."""
        if self._loop.is_closed():
            return
        self._sync_point()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._link.stop(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop.close()
        self._close_journal()

    def __enter__(self) -> BlockingReplica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_blocking(url: str | Sequence[str], agent: str, **options: Any) -> BlockingReplica:
    """`crdtdoc.connect` for synchronous code: `with crdtdoc.connect_blocking(url, agent=...)`.

    Takes the same keyword options as `crdtdoc.connect` (the fields of `LinkOptions`)."""
    return BlockingReplica(url, agent, LinkOptions(**options))

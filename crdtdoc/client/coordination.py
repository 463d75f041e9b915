"""Leases held through the hub: fencing tokens, automatic renewal, and retrying a lost race.

A `Lease` is what `ConnectedReplica.acquire` returns. While it is held, the replica renews it at a
third of its TTL; if a renewal is refused (the TTL ran out while this agent was paused or cut
off), the lease is marked `lost` and writes fenced with it are refused by the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from crdtdoc.errors import (
    CrdtdocError,
    Forbidden,
    LeaseLost,
    StaleRead,
    UsageError,
)
from crdtdoc.protocol.requests import Release, Renew


class LeaseHost(Protocol):
    """The connected replica a lease was taken through (a `ConnectedReplica` is one)."""

    @property
    def client_id(self) -> int: ...

    async def ask(self, request: Renew | Release, timeout: float = 30.0) -> dict[str, Any]:
        """Sends `request` to the hub; its result, or its typed refusal raised."""


log = logging.getLogger("crdtdoc.client.lease")
T = TypeVar("T")


class Fencing(Protocol):
    """What a fenced write names: a lease and the fencing token it was granted with."""

    @property
    def name(self) -> str: ...

    @property
    def token(self) -> int: ...


@dataclass(frozen=True)
class Fence:
    """A lease's name and fencing token, for a holder that keeps no `Lease` object across
    calls (the command line: `--fence NAME:TOKEN`)."""

    name: str
    token: int


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the hub lists it. `token` (its fencing token) is shown to its holder only:
    None for others' leases."""

    name: str
    holder: str
    token: int | None
    expires_in: float
    waiting: list[str]


class Lease:
    """A lease this agent holds; `token` is its fencing token."""

    def __init__(self, replica: LeaseHost, name: str, token: int, ttl: float) -> None:
        self._replica = replica
        self.name = name
        self.token = token
        self.ttl = ttl
        self.lost = False
        self.released = False
        self._client = replica.client_id  # the client it was acquired under: renewals name it
        self._on_release: list[Callable[[], Awaitable[None]]] = []
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    def __repr__(self) -> str:
        state = "lost" if self.lost else "released" if self.released else "held"
        return f"Lease({self.name!r}, token={self.token}, {state})"

    @property
    def held(self) -> bool:
        return not (self.lost or self.released)

    async def renew(self, ttl: float | None = None) -> None:
        """Extends the lease by `ttl` (default: its TTL) from now. Raises `LeaseLost`, or
        `Forbidden` if the hub says another agent holds it (the lease is then lost too)."""
        if not self.held:
            raise LeaseLost(f"lease {self.name!r} is {'lost' if self.lost else 'released'}")
        ttl = self.ttl if ttl is None else ttl
        try:
            await self._replica.ask(Renew(self.name, self.token, ttl, self._client))
        except (LeaseLost, Forbidden):
            self.lost = True
            raise
        self.ttl = ttl

    def on_release(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Runs `hook` when this lease is released, before the hub is told (a task claim
        removes its record from the task list)."""
        self._on_release.append(hook)

    async def release(self) -> None:
        """Gives the lease up (the next waiter gets it). Releasing twice is harmless."""
        if self.released:
            return
        self.released = True
        self._renewer.cancel()
        try:
            for hook in self._on_release:
                await hook()
        finally:  # a failing hook still frees the lease at the hub
            if not self.lost:
                with contextlib.suppress(LeaseLost):
                    await self._replica.ask(Release(self.name, self.token, self._client))

    async def _renew_forever(self) -> None:
        while self.held:
            await asyncio.sleep(self.ttl / 3)
            if not self.held:
                return
            try:
                await self.renew()
            except (LeaseLost, Forbidden) as exc:
                log.warning(
                    "lease lost",
                    extra={"lease": self.name, "token": self.token, "error": str(exc)},
                )
                return
            except CrdtdocError as exc:  # not connected right now: try again next period
                log.info("lease renewal failed", extra={"lease": self.name, "error": str(exc)})

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


async def retry(attempt: Callable[[], Awaitable[T]], attempts: int = 5, pause: float = 0.05) -> T:
    """Runs `attempt()` until it does not lose a race (`StaleRead` / `Conflict`), at most
    `attempts` times, pausing (with jitter) so the replica receives what the winner wrote.

    `attempt` must read afresh each time it runs: for example
    `await crdtdoc.retry(lambda: bump(replica))` where `bump` reads a value, computes, and writes
    it in `async with replica.commit(expect=read_version, on=[...])`."""
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except StaleRead:
            if number == attempts:
                raise
            await asyncio.sleep(pause * number * (0.5 + random.random()))
    raise UsageError("retry needs attempts >= 1")

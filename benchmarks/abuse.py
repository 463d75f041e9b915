"""The hub under abuse: issue 16's attacks, each against a fresh hub, beside an honest agent.

For every scenario a fresh `crdtdoc serve` (a secret, default limits, a new SQLite file in a
temporary folder, 127.0.0.1, a free port) gets an honest agent (`crdtdoc.connect`) that appends a
few characters and awaits `flush()` every 100 ms. After a baseline window the attacker, a separate
process holding a valid token and crafting y-protocols bytes itself over raw `websockets`
connections, attacks for a bounded window, paced within the hub's default rates; then it stops and
the honest agent flushes on. Recorded per scenario: the hub's RSS (VmRSS sampled every 150 ms,
peak from VmHWM), the honest flush latencies (p50/p99/max, timeouts) before, during and after,
how long after the attack flushes were back to normal, how the hub treated the attacker (close
codes, refusals, replies, resync requests) and the rate the attacker achieved.

Scenarios (issue 16's table):

- a: delete-only updates (~0.9 MiB each) naming ids that never exist;
- b: one-struct updates whose dependency (clock 0 of their client) never arrives;
- c: ~0.9 MiB updates of tiny structs waiting on a missing clock;
- d: 8 connections sending `next` number requests as fast as the hub answers;
- e: 70,000 distinct leases with a 3,600 s TTL;
- f: awareness messages of 1,024 "left" entries each;
- g: updates the parser passes and the CRDT engine (yrs) refuses (skipped when none can be built);
- h: applicable ~0.9 MiB updates of tiny structs under the attacker's own client id;
- stall: two hubs on PostgreSQL; one deletion of ids that never exist, then 400 ordinary updates;
  the shared log must still be compacted.

Targets (issue 16): during an attack the honest agent's flush p99 stays under 250 ms and the
hub's memory grows by less than 100 MB (taken as MiB); once it stops, flushes are back to normal
within 2 s. A verdict is printed per scenario; "not met" does not fail the run.

Run: `python -m benchmarks abuse [--scenarios a,b,...] [--seconds N] [--quick]` (results in
benchmarks/results/abuse.json, .md and .png). The stall scenario needs PostgreSQL on
127.0.0.1:5432 (or $CRDTDOC_BENCH_POSTGRES) and uses redis-server if installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, machine
from benchmarks.hub_load import cpu_seconds
from benchmarks.processes import (
    PG_ADMIN,
    HubProcess,
    hub_process,
    postgres_database,
    redis_server,
)

SCENARIOS = {
    "a": "delete-only updates naming ids that never exist",
    "b": "one-struct updates whose dependency never arrives",
    "c": "~0.9 MiB updates of tiny structs waiting on a missing clock",
    "d": "8 connections sending `next` number requests as fast as answered",
    "e": "70,000 distinct leases with a 3,600 s TTL",
    "f": 'awareness messages of 1,024 "left" entries each',
    "g": "updates the parser passes and the CRDT engine refuses",
    "h": "applicable ~0.9 MiB updates of tiny structs under the attacker's own client id",
    "stall": "two hubs on PostgreSQL: one deletion of ids that never exist, then 400 updates",
}
TARGET_P99_MS = 250.0
TARGET_GROWTH_MIB = 100.0
TARGET_RECOVERY_S = 2.0
PAYLOAD_BYTES = int(0.9 * 1024 * 1024)
"""Size of the large updates of a, c and h (the hub's default message limit is 1 MiB)."""
PACE = 0.9
"""Share of the hub's average rate limits the attackers use: they stay within the limits."""
LEASES = 70_000
NUMBER_CONNECTIONS = 8
IN_FLIGHT = 64
"""Requests one attacking connection keeps unanswered at most (d and e)."""
AWARENESS_ENTRIES = 1024
STALL_UPDATES = 400
STALL_COMPACT_EVERY = 100
"""--compact-log-updates of the stall scenario's hubs: 400 updates must be compacted."""
MAX_RECONNECTS = 200
RSS_PERIOD = 0.15
RECOVERED_RUN = 5
"""Consecutive normal flushes (half a second of them) that mean the hub has recovered."""


@dataclass
class Windows:
    baseline: float = 3.0
    attack: float = 10.0
    after: float = 4.0
    flush_every: float = 0.1
    flush_timeout: float = 2.0
    payload_bytes: int = PAYLOAD_BYTES


def _limits() -> dict[str, float]:
    """The hub's default limits the attackers pace themselves by."""
    from crdtdoc.server.config import HubConfig

    d = HubConfig()
    return {
        "updates_per_second": d.updates_per_second,
        "update_bytes_per_second": d.update_bytes_per_second,
        "awareness_per_second": d.awareness_per_second,
        "requests_per_second": d.requests_per_second,
        "max_message_bytes": d.max_message_bytes,
        "max_leases_per_agent": d.max_leases_per_agent,
    }


# -- attack payloads (Yjs v1 updates and y-protocols messages, built byte by byte) -------------


def delete_only_update(rng: random.Random, size: int) -> bytes:
    """An update with no structs and a delete set of about `size` bytes: 20 ranges for each of
    many random client ids (2^40..2^50, which no Yjs client draws), none of which exist."""
    from crdtdoc.encoding import Encoder, encode_var_uint

    blobs = []
    for _ in range(8):
        enc = Encoder()
        enc.write_var_uint(20)
        clock = 0
        for _ in range(20):
            clock += rng.randrange(1, 100_000)
            length = rng.randrange(1, 64)
            enc.write_var_uint(clock)
            enc.write_var_uint(length)
            clock += length
        blobs.append(enc.to_bytes())
    per_client = max(len(b) for b in blobs) + 7
    clients = sorted(rng.sample(range(2**40, 2**50), max(size // per_client - 1, 1)))
    body = b"".join(encode_var_uint(c) + blobs[i % len(blobs)] for i, c in enumerate(clients))
    return b"\x00" + encode_var_uint(len(clients)) + body


def one_struct_update(client: int, clock: int) -> bytes:
    """One string item of `client` at `clock` (> 0), typed after `clock - 1`: it waits for the
    client's earlier clocks."""
    from crdtdoc.contents import STRING
    from crdtdoc.encoding import Encoder

    enc = Encoder()
    for n in (1, 1, client, clock):
        enc.write_var_uint(n)
    enc.write_u8(STRING | 0x80)  # with an origin
    enc.write_var_uint(client)
    enc.write_var_uint(clock - 1)
    enc.write_var_string("x")
    enc.write_var_uint(0)  # empty delete set
    return enc.to_bytes()


def tiny_structs_update(client: int, start: int, size: int, root: str) -> tuple[bytes, int]:
    """About `size` bytes of one-character string items of `client` from clock `start`, each
    inserted just before the previous one (its right origin), so that none merge: tiny structs.
    From clock 0 the first item goes into root `root`; from a later clock the update depends on
    `start - 1` (waits for it if the hub lacks it). Returns (update, structs in it)."""
    from crdtdoc.contents import STRING
    from crdtdoc.encoding import Encoder, encode_var_uint

    prefix = bytes([STRING | 0x40]) + encode_var_uint(client)
    count = max(size // (len(prefix) + len(encode_var_uint(start + size)) + 2), 1)
    parts = []
    first = start
    if start == 0:
        enc = Encoder()
        enc.write_u8(STRING)
        enc.write_var_uint(1)  # parent: a root type, by name
        enc.write_var_string(root)
        enc.write_var_string("x")
        parts.append(enc.to_bytes())
        first = 1
    parts += [prefix + encode_var_uint(k - 1) + b"\x01x" for k in range(first, start + count)]
    head = Encoder()
    for n in (1, count, client, start):
        head.write_var_uint(n)
    return head.to_bytes() + b"".join(parts) + b"\x00", count


def left_awareness(rng: random.Random, entries: int) -> bytes:
    """An awareness message of `entries` "left" (null) entries of random client ids."""
    from crdtdoc.protocol.awareness import AwarenessEntry, encode_awareness
    from crdtdoc.protocol.messages import Awareness, encode_message

    clients = rng.sample(range(1, 2**53 - 1), entries)
    return encode_message(
        Awareness(encode_awareness([AwarenessEntry(c, 1, "null") for c in clients]))
    )


def engine_refused_update() -> tuple[bytes, bytes] | str:
    """(seed, bad): `bad` passes crdtdoc's parser and, applied by a hub replica holding `seed`,
    is refused by the CRDT engine itself (a rebuild). A string saying why none could be built
    otherwise. Tried: the constructions of ../shared/repros/repro_rebuild_leak.py (a map entry
    whose parent id names a string item) and the other yrs refusals crdtdoc.semantics lists."""
    from crdtdoc import CrdtdocError, Replica, ReplicaRebuilt
    from crdtdoc.contents import ANY, BINARY, STRING
    from crdtdoc.encoding import Encoder
    from crdtdoc.updates import parse_update

    author = Replica("seed", client_id=424_242)
    author.document("big").insert(0, "y" * 1000)
    author.map("m").set("k", 1)
    seed = author.encode_update()
    items = parse_update(seed, details=True).items or []
    text = next(i for i in items if i.content == STRING and i.length >= 10)
    value = next(i for i in items if i.parent_sub == "k")

    def with_parent(ref: int, parent: tuple[int, int], key: str | None, body: bytes) -> bytes:
        enc = Encoder()
        for n in (1, 1, 999_999, 0):
            enc.write_var_uint(n)
        enc.write_u8(ref | (0x20 if key is not None else 0))
        enc.write_var_uint(0)  # parent: a nested type, by id
        enc.write_var_uint(parent[0])
        enc.write_var_uint(parent[1])
        if key is not None:
            enc.write_var_string(key)
        enc.write_bytes(body)
        enc.write_var_uint(0)
        return enc.to_bytes()

    any_p = b"\x01\x77\x01P"  # one Any value: the string "P"
    candidates = {
        "map entry under a string item (repro_rebuild_leak.py)": with_parent(
            ANY, (text.client, text.clock + 5), "k", any_p
        ),
        "string under a string item": with_parent(
            STRING, (text.client, text.clock + 7), None, b"\x01Z"
        ),
        "binary entry under a map value": with_parent(
            BINARY, (value.client, value.clock), "b", b"\x01\x00"
        ),
    }
    outcomes = []
    for name, bad in candidates.items():
        try:
            parse_update(bad)
        except CrdtdocError as exc:
            outcomes.append(f"{name}: the parser refuses it ({exc})")
            continue
        hub = Replica("hub")
        hub.apply_update(seed, trusted=True)
        try:
            hub.apply_update(bad)
        except ReplicaRebuilt:
            return seed, bad
        except CrdtdocError as exc:
            if "engine" in str(exc):
                return seed, bad
            outcomes.append(f"{name}: refused before the engine ({str(exc)[:110]})")
            continue
        outcomes.append(f"{name}: applied without complaint")
    return (
        "no update the parser passes and the engine refuses could be built: the semantic gate "
        "(crdtdoc.semantics) refuses each known construction before yrs sees it, and "
        "tests/interop/test_semantic_differential.py fuzzes for any that slip through. "
        + "; ".join(outcomes)
    )


# -- the attacker (a child process: `python -m benchmarks.abuse --attacker`) ------------------


@dataclass
class AttackStats:
    sent: int = 0
    sent_bytes: int = 0
    connections: int = 0
    connect_failures: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    close_reasons: dict[str, str] = field(default_factory=dict)
    auth_denials: int = 0
    auth_reasons: list[str] = field(default_factory=list)
    replies: Counter[str] = field(default_factory=Counter)
    resync_requests: int = 0
    updates_received: int = 0
    awareness_received: int = 0
    durable_clock: int = 0
    first_send: float | None = None
    last_send: float | None = None
    notes: list[str] = field(default_factory=list)

    def sent_one(self, size: int) -> None:
        now = time.monotonic()
        self.first_send = self.first_send or now
        self.last_send = now
        self.sent += 1
        self.sent_bytes += size

    def report(self) -> dict[str, Any]:
        span = (self.last_send - self.first_send) if self.first_send and self.last_send else 0.0
        out = asdict(self)
        out.pop("first_send")
        out.pop("last_send")
        out["closes"] = dict(self.closes)
        out["replies"] = dict(self.replies)
        out["sending_s"] = round(span, 2)
        out["rate_per_s"] = round(self.sent / span, 1) if span > 0 else None
        out["mib_per_s"] = round(self.sent_bytes / span / 2**20, 2) if span > 0 else None
        return out


class RawPeer:
    """One attacking connection: crdtdoc's hello (to get replies and durable acks), sync step 1,
    then whatever the attack sends; a reader task counts what the hub answers."""

    def __init__(self, url: str, stats: AttackStats, client: int = 0) -> None:
        self.url = url
        self.stats = stats
        self.client = client
        self.ws: Any = None
        self.closed = asyncio.Event()
        self.aborted = False
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[int, asyncio.Future[str]] = {}
        self._next_id = 0
        self._steps1 = 0

    async def open(self) -> RawPeer:
        from websockets.asyncio.client import connect

        from crdtdoc.protocol.extension import Hello, encode_extension
        from crdtdoc.protocol.messages import SyncStep1, encode_message

        self.ws = await connect(
            self.url,
            max_size=None,
            compression=None,
            open_timeout=5,
            ping_interval=None,
            close_timeout=1,
        )
        self.stats.connections += 1
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.ws.send(encode_message(encode_extension(Hello("attacker"))))
        await self.ws.send(encode_message(SyncStep1(b"\x00")))
        return self

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for data in self.ws:
                if not isinstance(data, bytes):
                    continue
                try:
                    self._handle(data)
                except Exception as exc:  # a benchmark must not die of what the hub sends
                    if len(self.stats.notes) < 5:
                        self.stats.notes.append(f"unreadable message: {exc!r}"[:200])
        except ConnectionClosed:
            pass
        except Exception as exc:  # a benchmark must not die of what the hub sends
            self.stats.notes.append(f"reader: {exc!r}"[:200])
        finally:
            if not self.aborted:
                code = str(self.ws.close_code)
                self.stats.closes[code] += 1
                self.stats.close_reasons.setdefault(code, (self.ws.close_reason or "")[:160])
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result("closed")
            self.closed.set()

    def _handle(self, data: bytes) -> None:
        from crdtdoc.protocol.extension import Durable, Reply, decode_extension
        from crdtdoc.protocol.messages import (
            Auth,
            Awareness,
            Extension,
            SyncStep1,
            SyncUpdate,
            decode_message,
        )

        message = decode_message(data)
        if isinstance(message, SyncStep1):
            self._steps1 += 1
            if self._steps1 > 1:  # the first opens the sync; later ones ask for a resync
                self.stats.resync_requests += 1
        elif isinstance(message, SyncUpdate):
            self.stats.updates_received += 1
        elif isinstance(message, Awareness):
            self.stats.awareness_received += 1
        elif isinstance(message, Auth):
            self.stats.auth_denials += 1
            if len(self.stats.auth_reasons) < 3 and message.reason not in self.stats.auth_reasons:
                self.stats.auth_reasons.append(message.reason[:160])
        elif isinstance(message, Extension):
            ext = decode_extension(message)
            if isinstance(ext, Reply):
                outcome = ext.error or "ok"
                self.stats.replies[outcome] += 1
                waiter = self._waiters.pop(ext.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(outcome)
            elif isinstance(ext, Durable) and self.client:
                clock = ext.version.clocks.get(self.client, 0)
                self.stats.durable_clock = max(self.stats.durable_clock, clock)

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)
        self.stats.sent_one(len(data))

    async def request(self, op: str, args: dict[str, Any]) -> asyncio.Future[str]:
        """Sends a request; the future resolves to its outcome ("ok", an error code, "closed")."""
        from crdtdoc.protocol.extension import Request, encode_extension
        from crdtdoc.protocol.messages import encode_message

        self._next_id += 1
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[self._next_id] = waiter
        await self.send(encode_message(encode_extension(Request(self._next_id, op, args))))
        return waiter

    def abort(self) -> None:
        """Drops the connection at once (the attack's end), without counting it as a close."""
        self.aborted = True
        with contextlib.suppress(Exception):
            self.ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()


class Attacker:
    """Keeps connections open (reopening closed ones, boundedly) and sends paced messages."""

    def __init__(self, url: str, client: int = 0) -> None:
        self.url = url
        self.client = client
        self.stats = AttackStats()
        self.peers: list[RawPeer] = []
        self.reconnects = 0

    async def peer(self, current: RawPeer | None = None) -> RawPeer:
        """`current` if still open, else a new connection (after a pause if one was closed)."""
        if current is not None and not current.closed.is_set():
            return current
        while True:
            if current is not None or self.reconnects:
                await asyncio.sleep(0.25)
            if self.reconnects >= MAX_RECONNECTS:
                raise RuntimeError(f"gave up after {MAX_RECONNECTS} reconnections")
            self.reconnects += 1
            try:
                peer = await RawPeer(self.url, self.stats, self.client).open()
            except Exception as exc:
                self.stats.connect_failures += 1
                if self.stats.connect_failures <= 3:
                    self.stats.notes.append(f"connect: {exc!r}"[:200])
                current = None
                continue
            self.peers.append(peer)
            return peer

    async def paced(self, messages: Iterable[bytes], rate: float, by_bytes: bool) -> None:
        """Sends `messages` at `rate` messages (or bytes) per second on one connection, never
        more than a second ahead of the average after a stall (the hub's buckets hold two)."""
        from websockets.exceptions import ConnectionClosed

        peer = await self.peer()
        due = time.monotonic()
        for message in messages:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            due = max(due, time.monotonic() - 1.0) + (len(message) if by_bytes else 1) / rate
            while True:  # a message the closed connection did not take goes on the next one
                peer = await self.peer(peer)
                try:
                    await peer.send(message)
                    break
                except ConnectionClosed:
                    continue

    def abort(self) -> None:
        for peer in self.peers:
            peer.abort()


def _prepare(cfg: dict[str, Any]) -> dict[str, Any]:
    """Builds an attack's payloads before it starts (their CPU cost stays out of the window)."""
    name, seconds, limits = cfg["scenario"], cfg["seconds"], cfg["limits"]
    size = cfg["payload_bytes"]
    rng = random.Random(f"abuse-{name}")
    client = rng.randrange(1 << 20, 1 << 31)
    byte_rate = PACE * limits["update_bytes_per_second"]
    prepared: dict[str, Any] = {"client": client}
    if name == "a":
        count = min(math.ceil(seconds * byte_rate / size) + 2, 400)
        prepared["messages"] = [_sync_update(delete_only_update(rng, size)) for _ in range(count)]
    elif name == "b":
        count = math.ceil(seconds * PACE * limits["updates_per_second"]) + 10
        prepared["messages"] = [
            _sync_update(one_struct_update(client, k + 1)) for k in range(count)
        ]
    elif name in ("c", "h"):
        count = min(math.ceil(seconds * byte_rate / size) + 2, 400)
        clock = 1 if name == "c" else 0  # c: clock 0 never comes
        messages, ends = [], []
        for _ in range(count):
            data, structs = tiny_structs_update(client, clock, size, f"abuse-{name}")
            messages.append(_sync_update(data))
            clock += structs
            ends.append(clock)
        prepared["messages"] = messages
        prepared["ends"] = ends
    elif name == "f":
        count = math.ceil(seconds * PACE * limits["awareness_per_second"]) + 2
        prepared["messages"] = [left_awareness(rng, AWARENESS_ENTRIES) for _ in range(count)]
    elif name == "g":
        built = engine_refused_update()
        if isinstance(built, str):
            raise RuntimeError(built)
        seed, bad = built
        prepared["messages"] = [_sync_update(seed), _sync_update(bad)]
    elif name == "stall":
        from crdtdoc import Replica
        from crdtdoc.idset import IdSet
        from crdtdoc.updates import deletes_only

        nowhere = IdSet()
        nowhere.add(rng.randrange(2**40, 2**50), 0, 10)  # a client that never writes
        writer = Replica("attacker", client_id=client)
        made: list[bytes] = []
        writer.on_update(lambda update, local: made.append(update) if local else None)
        doc = writer.document("abuse-stall")
        for i in range(STALL_UPDATES):
            doc.append(f"{i} ")
        prepared["messages"] = [_sync_update(deletes_only(nowhere))] + [
            _sync_update(u) for u in made
        ]
    return prepared


def _sync_update(update: bytes) -> bytes:
    from crdtdoc.protocol.messages import SyncUpdate, encode_message

    return encode_message(SyncUpdate(update))


async def _requests(
    attacker: Attacker, ops: Iterator[tuple[str, dict[str, Any]]], lock: asyncio.Lock
) -> None:
    """One connection sending requests as fast as they are answered, `IN_FLIGHT` at most."""
    from websockets.exceptions import ConnectionClosed

    window = asyncio.Semaphore(IN_FLIGHT)
    peer: RawPeer | None = None
    while True:
        async with lock:
            op = next(ops, None)
        if op is None:
            return
        await window.acquire()
        try:
            peer = await attacker.peer(peer)
            waiter = await peer.request(*op)
        except ConnectionClosed:
            window.release()
            continue
        waiter.add_done_callback(lambda _: window.release())


async def _attack(cfg: dict[str, Any], prepared: dict[str, Any]) -> Attacker:
    name, limits = cfg["scenario"], cfg["limits"]
    attacker = Attacker(cfg["url"], prepared["client"])
    messages = prepared.get("messages", [])
    byte_rate = PACE * limits["update_bytes_per_second"]
    try:
        async with asyncio.timeout(cfg["seconds"]):
            if name in ("a", "c", "h"):
                await attacker.paced(messages, byte_rate, by_bytes=True)
            elif name == "b":
                await attacker.paced(messages, PACE * limits["updates_per_second"], False)
            elif name == "f":
                await attacker.paced(messages, PACE * limits["awareness_per_second"], False)
            elif name == "stall":
                peer = await attacker.peer()
                await peer.send(messages[0])  # the deletion: see whether the hub takes it
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await peer.closed.wait()
                await attacker.paced(messages[1:], 0.5 * limits["updates_per_second"], False)
            elif name == "d":
                lock = asyncio.Lock()
                numbers = iter(lambda: ("next", {"sequence": "abuse"}), None)
                await asyncio.gather(
                    *(_requests(attacker, numbers, lock) for _ in range(NUMBER_CONNECTIONS))
                )
            elif name == "e":
                leases = (
                    (
                        "acquire",
                        {"name": f"abuse-{i}", "ttl": 3600.0, "wait": 0.0, "client": 7},
                    )
                    for i in range(LEASES)
                )
                await _requests(attacker, leases, asyncio.Lock())
                attacker.stats.notes.append(f"all {LEASES} acquire requests sent")
            elif name == "g":
                await _engine_refusals(attacker, messages[0], messages[1], limits)
    except TimeoutError:
        pass
    except RuntimeError as exc:
        attacker.stats.notes.append(str(exc))
    attacker.abort()  # the attack ends now: every connection drops at once
    await asyncio.sleep(0)
    return attacker


async def _engine_refusals(
    attacker: Attacker, seed: bytes, bad: bytes, limits: dict[str, float]
) -> None:
    """Seeds the room, then sends the refused update again and again (each refusal closes the
    connection: reconnect, resend), paced within the update rate."""
    from websockets.exceptions import ConnectionClosed

    peer = await attacker.peer()
    await peer.send(seed)
    pause = 1 / (PACE * limits["updates_per_second"])
    while True:
        try:
            peer = await attacker.peer(peer)
            await peer.send(bad)
        except ConnectionClosed:
            pass
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await peer.closed.wait()
        await asyncio.sleep(pause)


def attacker_main() -> None:
    """The child: reads its config (one JSON line), prepares, says ready, waits for "go",
    attacks, says stopped, then prints its statistics (one JSON line each)."""

    def say(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    cfg = json.loads(sys.stdin.readline())
    started = time.monotonic()
    try:
        prepared = _prepare(cfg)
    except RuntimeError as exc:
        say({"event": "skip", "reason": str(exc)})
        return
    say({"event": "ready", "prepare_s": round(time.monotonic() - started, 2)})
    if sys.stdin.readline().strip() != "go":
        return
    attacker = asyncio.run(_attack(cfg, prepared))
    say({"event": "stopped"})
    report = attacker.stats.report()
    report["reconnects"] = max(attacker.reconnects - 1, 0)
    report["messages_prepared"] = len(prepared.get("messages", []))
    if prepared.get("ends") and attacker.stats.sent:  # c, h: the clocks the sent updates reach
        report["clocks_sent"] = prepared["ends"][
            min(attacker.stats.sent, len(prepared["ends"])) - 1
        ]
    say({"event": "result", "stats": report})


# -- measuring: the hub's memory, the honest agent's flushes -----------------------------------


def rss_kib(pid: int, key: str = "VmRSS") -> int | None:
    try:
        match = re.search(rf"{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


class RssSampler(threading.Thread):
    """Samples the VmRSS of some processes every `RSS_PERIOD` seconds (a thread: it samples on
    even while the event loop is busy)."""

    def __init__(self, pids: list[int], t0: float) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.t0 = t0
        self.samples: list[tuple[float, list[int | None]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            at = time.monotonic() - self.t0
            self.samples.append((at, [rss_kib(pid) for pid in self.pids]))
            self._stop_event.wait(RSS_PERIOD)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def at(self, t: float, which: int = 0) -> float | None:
        """MiB of process `which` at the last sample taken at or before `t`."""
        value = None
        for at, kib in self.samples:
            if at > t:
                break
            if kib[which] is not None:
                value = kib[which]
        return None if value is None else round(value / 1024, 1)

    def peak(self, start: float, which: int = 0) -> float | None:
        values = [k[which] for at, k in self.samples if at >= start and k[which] is not None]
        return round(max(values) / 1024, 1) if values else None


@dataclass
class Flush:
    start: float
    end: float
    outcome: str  # "ok", "timeout" or an error's name

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


async def honest_agent(
    url: str, token: str, windows: Windows, t0: float, stop: asyncio.Event, flushes: list[Flush]
) -> None:
    """Appends a few characters and awaits flush() every `flush_every` seconds until `stop`."""
    import crdtdoc
    from crdtdoc import CrdtdocError, SyncTimeout

    replica = crdtdoc.connect(url, agent="honest", token=token, open_timeout=10)
    await replica.start()
    try:
        doc = replica.document("notes")
        due = time.monotonic()
        i = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(due - time.monotonic(), 0)):
                    await stop.wait()
            if stop.is_set():
                break
            start = time.monotonic()
            try:
                doc.append(f"{i} ")
                await replica.flush(timeout=windows.flush_timeout)
                outcome = "ok"
            except SyncTimeout:
                outcome = "timeout"
            except CrdtdocError as exc:
                outcome = type(exc).__name__
            end = time.monotonic()
            flushes.append(Flush(start - t0, end - t0, outcome))
            i += 1
            due = start + windows.flush_every
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await replica.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def flush_summary(flushes: list[Flush], timeout: float) -> dict[str, Any]:
    """p50/p99/max in ms (a timed-out flush counts as the timeout), timeouts and errors."""
    if not flushes:
        return {"flushes": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "timeouts": 0}
    ms = [timeout * 1000 if f.outcome == "timeout" else f.ms for f in flushes]
    errors = Counter(f.outcome for f in flushes if f.outcome not in ("ok", "timeout"))
    return {
        "flushes": len(flushes),
        "completed": sum(f.outcome == "ok" for f in flushes),
        "p50_ms": round(_percentile(ms, 0.5), 1),
        "p99_ms": round(_percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
        "timeouts": sum(f.outcome == "timeout" for f in flushes),
        "errors": dict(errors),
    }


def recovery(
    flushes: list[Flush], stop: float, threshold_ms: float, run: int = RECOVERED_RUN
) -> float | None:
    """Seconds from the attack's end until flushes are normal again: until the start of the
    first `run` consecutive normal flushes (completed within `threshold_ms`) among those that
    ended after the stop, 0 if that run started before it; an isolated slow flush later on
    (a shared machine) does not count. None if no such run came (not recovered)."""
    later = [f for f in flushes if f.end > stop]
    streak: list[Flush] = []
    for f in later:
        if f.outcome == "ok" and f.ms <= threshold_ms:
            streak.append(f)
            if len(streak) >= run:
                return round(max(streak[0].start - stop, 0.0), 2)
        else:
            streak = []
    return None


# -- running one scenario ----------------------------------------------------------------------


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


async def _line(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            raw = await stream.readline()
            if not raw:
                raise RuntimeError("the attacker exited without reporting")
            with contextlib.suppress(ValueError):
                event: dict[str, Any] = json.loads(raw)
                return event


def _scrape(url: str, token: str) -> dict[str, float] | None:
    """The hub's counters from /metrics (None if it does not answer within 2 s)."""
    http = url.replace("ws://", "http://") + "/metrics"
    request = urllib.request.Request(http, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(
            r"(crdtdoc_(?:(?:refusals|messages_received|compactions)_total"
            r"|event_loop_lag_max_seconds))"
            r"(?:\{reason=\"([^\"]*)\"\})? ([0-9.e+]+)",
            line,
        )
        if match:
            name, reason, value = match.groups()
            out[f"{name}{'/' + reason if reason else ''}"] = float(value)
    return out


def _metrics_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> Any:
    if before is None or after is None:
        return "the hub did not answer /metrics within 2 s"
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {
        "messages_received": int(delta.get("crdtdoc_messages_received_total", 0)),
        "refusals": {
            k.split("/", 1)[1]: int(v)
            for k, v in delta.items()
            if k.startswith("crdtdoc_refusals_total/") and v
        },
        "compactions": int(delta.get("crdtdoc_compactions_total", 0)),
        # the longest the hub's event loop was late since it started (baseline included)
        "event_loop_stall_max_ms": round(
            1000 * after.get("crdtdoc_event_loop_lag_max_seconds", float("nan")), 1
        ),
    }


async def _start_attacker(cfg: dict[str, Any]) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.abuse",
        "--attacker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT.parent),
    )
    assert child.stdin is not None
    child.stdin.write((json.dumps(cfg) + "\n").encode())
    await child.stdin.drain()
    return child


async def _end(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await child.wait()


def progress(scenario: str, what: str) -> None:
    sys.stderr.write(f"[abuse {scenario}] {what}\n")
    sys.stderr.flush()


async def measure(
    scenario: str,
    urls: list[str],
    pids: list[int],
    secret: bytes,
    windows: Windows,
    room: str,
) -> dict[str, Any]:
    """The phases of one scenario against running hubs: the attacker prepares, the honest agent
    (on the last hub) flushes through baseline, attack and after. Returns what was measured."""
    from crdtdoc.tokens import create_token

    honest_token = create_token(secret, "honest", ttl=3600)
    attacker_token = create_token(secret, "attacker", ttl=3600)
    cfg = {
        "scenario": scenario,
        "url": f"{urls[0]}/{room}?token={attacker_token}",
        "seconds": windows.attack,
        "limits": _limits(),
        "payload_bytes": windows.payload_bytes,
    }
    t0 = time.monotonic()
    sampler = RssSampler(pids, t0)
    sampler.start()
    child = await _start_attacker(cfg)
    assert child.stdout is not None and child.stdin is not None
    stop = asyncio.Event()
    flushes: list[Flush] = []
    agent: asyncio.Task[None] | None = None
    try:
        progress(scenario, "attacker preparing its payloads")
        ready = await _line(child.stdout, 300)
        if ready["event"] == "skip":
            raise Skip(ready["reason"])
        progress(scenario, f"baseline: honest agent flushing for {windows.baseline:g} s")
        agent = asyncio.create_task(
            honest_agent(f"{urls[-1]}/{room}", honest_token, windows, t0, stop, flushes)
        )
        await asyncio.sleep(windows.baseline)
        if agent.done():
            agent.result()  # raises why the honest agent could not start
        metrics_before = await asyncio.to_thread(_scrape, urls[0], attacker_token)
        progress(scenario, f"attack: {SCENARIOS[scenario]} for up to {windows.attack:g} s")
        attack_start = time.monotonic() - t0
        cpu_start = cpu_seconds(pids[0]), time.process_time()
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        try:
            await _line(child.stdout, windows.attack + 30)
        except (TimeoutError, RuntimeError) as exc:
            progress(scenario, f"the attacker did not stop by itself ({exc!r}): killed")
            await _end(child)
        attack_stop = time.monotonic() - t0
        cpu_during = {
            "hub": round(cpu_seconds(pids[0]) - cpu_start[0], 2),
            "honest_process": round(time.process_time() - cpu_start[1], 2),
        }
        progress(scenario, f"after: attacker stopped, honest agent flushing {windows.after:g} s")
        await asyncio.sleep(windows.after)
        after_end = time.monotonic() - t0
        stop.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(windows.flush_timeout + 8):
                await agent
        stats: dict[str, Any] = {}
        with contextlib.suppress(TimeoutError, RuntimeError):
            stats = (await _line(child.stdout, 10)).get("stats", {})
        metrics_after = await asyncio.to_thread(_scrape, urls[0], attacker_token)
    finally:
        stop.set()
        sampler.stop()
        if agent is not None and not agent.done():
            agent.cancel()
            with contextlib.suppress(BaseException):
                await agent
        await _end(child)
    baseline = [f for f in flushes if f.start < attack_start]
    during = [f for f in flushes if attack_start <= f.start < attack_stop]
    after = [f for f in flushes if f.start >= attack_stop]
    base = flush_summary(baseline, windows.flush_timeout)
    threshold = max(3 * (base["p99_ms"] or 0), 50.0)
    hubs = []
    for which, pid in enumerate(pids):
        before = sampler.at(attack_start, which)
        peak = max(filter(None, [sampler.peak(attack_start, which), _hwm_mib(pid)]), default=None)
        hubs.append(
            {
                "pid": pid,
                "rss_before_mib": before,
                "rss_peak_mib": peak,
                "rss_after_mib": sampler.at(after_end, which),
                "growth_mib": round(peak - before, 1) if peak and before else None,
            }
        )
    return {
        "phases_s": {
            "attack_start": round(attack_start, 2),
            "attack_stop": round(attack_stop, 2),
            "after_end": round(after_end, 2),
            "attack_seconds": round(attack_stop - attack_start, 2),
        },
        "hub": hubs[0],
        "other_hubs": hubs[1:],
        "cpu_during_attack_s": cpu_during,
        "rss_samples_mib": [
            [round(at, 2), *[round(k / 1024, 1) if k else None for k in kib]]
            for at, kib in sampler.samples[:: max(len(sampler.samples) // 200, 1)]
        ],
        "honest": {
            "baseline": base,
            "during": flush_summary(during, windows.flush_timeout),
            "after": flush_summary(after, windows.flush_timeout),
            "normal_threshold_ms": round(threshold, 1),
            "recovery_s": recovery(flushes, attack_stop, threshold),
            "timeline": [[round(f.start, 3), round(f.ms, 1), f.outcome] for f in flushes],
        },
        "attacker": stats,
        "hub_metrics": _metrics_delta(metrics_before, metrics_after),
    }


def _hwm_mib(pid: int) -> float | None:
    kib = rss_kib(pid, "VmHWM")
    return None if kib is None else round(kib / 1024, 1)


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    during, growth = result["honest"]["during"], result["hub"]["growth_mib"]
    recovered = result["honest"]["recovery_s"]
    checks = {
        "flush_p99": during["p99_ms"] is not None and during["p99_ms"] < TARGET_P99_MS,
        "memory": growth is not None and growth < TARGET_GROWTH_MIB,
        "recovery": recovered is not None and recovered <= TARGET_RECOVERY_S,
    }
    return {**checks, "met": all(checks.values())}


async def run_single_hub(scenario: str, windows: Windows, secret_file: Path) -> dict[str, Any]:
    if scenario == "g":
        built = engine_refused_update()
        if isinstance(built, str):
            raise Skip(built)
    secret = secret_file.read_bytes().strip()
    progress(scenario, "starting a fresh hub")
    with hub_process("--secret-file", str(secret_file)) as hub:
        assert hub.proc is not None
        return await measure(
            scenario, [hub.url], [hub.proc.pid], secret, windows, f"abuse-{scenario}"
        )


async def run_stall(windows: Windows, secret_file: Path) -> dict[str, Any]:
    """Two hubs on one fresh PostgreSQL database (and Redis, if installed); the attacker on the
    first, the honest agent on the second; then the shared log's rows are counted."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            pass
    except Exception as exc:
        raise Skip(f"PostgreSQL is not reachable ({exc})") from None
    secret = secret_file.read_bytes().strip()
    room = "abuse-stall"
    with contextlib.ExitStack() as stack:
        progress("stall", "starting two hubs on a fresh PostgreSQL database")
        pg_url = stack.enter_context(postgres_database(PG_ADMIN, prefix="crdtdoc_bench"))
        extra = ["--secret-file", str(secret_file)]
        extra += ["--compact-log-updates", str(STALL_COMPACT_EVERY)]
        if shutil.which("redis-server"):
            extra += ["--redis", stack.enter_context(redis_server()).url]
        hubs = []
        for i in range(2):
            log = secret_file.with_name(f"stall-hub-{i}.stderr")
            hub = HubProcess(pg_url, 0, *extra, log=log)
            stack.callback(hub.stop)
            hub.start(timeout=60)
            hubs.append(hub)
        urls = [h.url for h in hubs]
        pids = [h.proc.pid for h in hubs if h.proc is not None]
        result = await measure("stall", urls, pids, secret, windows, room)
        rows = appended = None
        for _ in range(50):  # compaction runs in the background
            with psycopg.connect(pg_url, connect_timeout=5) as db:
                left = db.execute(
                    "SELECT count(*) FROM crdtdoc_updates WHERE room = %s", (room,)
                ).fetchone()
                last = db.execute(
                    "SELECT last_seq FROM crdtdoc_rooms WHERE room = %s", (room,)
                ).fetchone()
            rows, appended = (left or (0,))[0], (last or (0,))[0]
            if rows <= STALL_COMPACT_EVERY:
                break
            await asyncio.sleep(0.1)
        result["shared_log"] = {
            "rows_left": rows,
            "appended": appended,
            "compact_log_updates": STALL_COMPACT_EVERY,
            "redis": "--redis" in extra,
        }
        return result


async def run_all(names: list[str], windows: Windows) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        secret_file = Path(tmp) / "secret"
        secret_file.write_text(os.urandom(24).hex())
        for name in names:
            started = time.monotonic()
            try:
                if name == "stall":
                    result = await run_stall(windows, secret_file)
                else:
                    result = await run_single_hub(name, windows, secret_file)
                result["status"] = "ran"
                result["verdict"] = verdict(result)
                if name == "stall":
                    log = result["shared_log"]
                    compacted = log["rows_left"] is not None and (
                        log["rows_left"]
                        <= max(2 * STALL_COMPACT_EVERY, (log["appended"] or 0) // 3)
                    )
                    result["verdict"]["compaction"] = compacted
                    result["verdict"]["met"] = result["verdict"]["met"] and compacted
            except Skip as exc:
                result = {"status": "skipped", "reason": str(exc)}
            except Exception as exc:  # one broken scenario must not lose the others' results
                result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
            result["title"] = SCENARIOS[name]
            result["wall_s"] = round(time.monotonic() - started, 1)
            results[name] = result
            progress(name, f"done in {result['wall_s']} s: {one_line(name, result)}")
    return results


# -- reporting ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


_LABELS = {
    "a": "{sent} delete-only updates (~0.9 MiB) naming ids that never exist",
    "b": "{sent:,} one-struct updates whose dependency never arrives",
    "c": "{sent} updates of ~0.9 MiB of tiny structs waiting on a missing clock",
    "d": "{connections} connections sending {sent:,} `next` number requests",
    "e": "{sent:,} acquires of distinct leases with a 3,600 s TTL",
    "f": '{sent} awareness messages of 1,024 "left" entries each',
    "h": "{sent} applicable ~0.9 MiB updates of tiny structs under its own client id",
    "stall": "two hubs: 1 deletion of ids that never exist, then {updates} updates",
}
"""Each attack as issue 16's table says it, with what a run sent."""


def attack_label(name: str, r: dict[str, Any]) -> str:
    """The attack as issue 16's table says it, with what this run sent."""
    sent = (r.get("attacker") or {}).get("sent", 0)
    label = _LABELS.get(name)
    if label is None:
        return SCENARIOS[name]
    return label.format(sent=sent, connections=NUMBER_CONNECTIONS, updates=max(sent - 1, 0))


def treatment(name: str, r: dict[str, Any]) -> str:
    """How the hub treated the attacker, in a few words."""
    s = r.get("attacker") or {}
    parts = []
    if s.get("closes"):
        parts.append(
            "closed "
            + ", ".join(
                f"{n}x {code}"
                + (f" ({s['close_reasons'].get(code)})" if s["close_reasons"].get(code) else "")
                for code, n in s["closes"].items()
            )
        )
    if s.get("replies"):
        parts.append("replies " + ", ".join(f"{k} {v:,}" for k, v in s["replies"].items()))
    if s.get("resync_requests"):
        parts.append(f"{s['resync_requests']} resync requests")
    if s.get("durable_clock") or s.get("clocks_sent"):
        sent = f" of {s['clocks_sent']:,} sent" if s.get("clocks_sent") else ""
        parts.append(f"durable up to clock {s.get('durable_clock', 0):,}{sent}")
    metrics = r.get("hub_metrics")
    if isinstance(metrics, dict) and metrics.get("refusals"):
        parts.append("refusals " + ", ".join(f"{k} {v}" for k, v in metrics["refusals"].items()))
    if isinstance(metrics, str):
        parts.append(metrics)
    return "; ".join(parts) or "nothing refused"


def one_line(name: str, r: dict[str, Any]) -> str:
    if r.get("status") == "skipped":  # the first clause; abuse.json has the whole reason
        return f"skipped: {r.get('reason', '').split(': ', 1)[0]}"
    if r.get("status") != "ran":
        return f"{r.get('status')}: {r.get('reason', '')[:200]}"
    v, h, during = r["verdict"], r["hub"], r["honest"]["during"]
    rec = r["honest"]["recovery_s"]
    return (
        f"{'met' if v['met'] else 'NOT met'}: memory {h['rss_before_mib']} -> "
        f"{h['rss_peak_mib']} MiB, flush p99 during {_ms(during['p99_ms'])} "
        f"({during['timeouts']} timeouts), recovery "
        f"{'not within the window' if rec is None else f'{rec} s'}, longest event-loop stall "
        f"{_stall(r)}"
    )


def _stall(r: dict[str, Any]) -> str:
    metrics = r.get("hub_metrics")
    stall = metrics.get("event_loop_stall_max_ms") if isinstance(metrics, dict) else None
    return "-" if stall is None or stall != stall else f"{stall:g} ms"


def markdown(
    results: dict[str, dict[str, Any]], windows: Windows, tree: dict[str, Any] | None = None
) -> str:
    lines = []
    if tree is not None:
        changed = len(tree["uncommitted"])
        lines += [
            f"Hubs run from the working tree at commit {tree['commit']}"
            + (
                f", with uncommitted changes in {changed} files of crdtdoc/ and server/"
                if changed
                else ""
            )
            + ".",
            "",
        ]
    lines += [
        f"Targets (issue 16): during an attack, honest flush p99 < {TARGET_P99_MS:.0f} ms and hub "
        f"memory growth < {TARGET_GROWTH_MIB:.0f} MiB; after it stops, flushes normal again within "
        f"{TARGET_RECOVERY_S:.0f} s. Windows: baseline {windows.baseline:g} s, attack up to "
        f"{windows.attack:g} s, after {windows.after:g} s; the honest agent flushes every "
        f"{windows.flush_every * 1000:.0f} ms, timeout {windows.flush_timeout:g} s (a timed-out "
        'flush counts as the timeout in the percentiles). "Normal after" is when the first run of '
        f"{RECOVERED_RUN} consecutive normal flushes began, a normal flush taking at most 3x "
        "the baseline p99 (50 ms at least). Memory: the hub's VmRSS before the attack, peak "
        "(VmHWM) and at the end of the after window.",
        "",
        "| | attack | hub memory (MiB) | honest flushes during | after it stopped "
        "| longest event-loop stall | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if r.get("status") != "ran":
            reason = r.get("reason", "").split(": ", 1)[0].split(". ")[0]
            lines.append(
                f"| {name} | {SCENARIOS[name]} | - | - | - | - | {r['status']}: {reason} "
                "(abuse.json has the details) |"
            )
            continue
        h, hon, v = r["hub"], r["honest"], r["verdict"]
        d, a = hon["during"], hon["after"]
        rec = hon["recovery_s"]
        misses = [
            k for k in ("flush_p99", "memory", "recovery", "compaction") if k in v and not v[k]
        ]
        lines.append(
            f"| {name} | {attack_label(name, r)} "
            f"| {h['rss_before_mib']} → {h['rss_peak_mib']} (after: {h['rss_after_mib']}) "
            f"| p50 {_ms(d['p50_ms'])}, p99 {_ms(d['p99_ms'])}, {d['timeouts']} of "
            f"{d['flushes']} timed out "
            f"| p50 {_ms(a['p50_ms'])}, p99 {_ms(a['p99_ms'])}, "
            + ("not normal by the end" if rec is None else f"normal after {rec} s")
            + f" | {_stall(r)}"
            + f" | {'met' if v['met'] else 'not met (' + ', '.join(misses) + ')'} |"
        )
    lines += [
        "",
        "## How the hub treated the attacker",
        "",
        "Sent: what the attacker's sockets took (the hub may still have been reading it, or "
        "dropped it with a closed connection); the rate is over the attacker's sending time. "
        "Answers: close codes the attacker received (with a reason), request replies by "
        "outcome, sync step 1 messages asking it to resync, its durable clock (c, h: of the "
        "clocks its sent updates reach), and the hub's refusals counted in /metrics.",
        "",
        "| | sent | achieved rate | connections | the hub's answers |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if r.get("status") != "ran":
            continue
        s = r.get("attacker") or {}
        rate = s.get("rate_per_s")
        mib = s.get("mib_per_s")
        lines.append(
            f"| {name} | {s.get('sent', 0):,} messages, {s.get('sent_bytes', 0) / 2**20:.1f} MiB "
            f"| {rate if rate is not None else '-'}/s"
            + (f", {mib} MiB/s" if mib else "")
            + f" | {s.get('connections', 0)} | {treatment(name, r)} |"
        )
    stall = results.get("stall")
    if stall and stall.get("status") == "ran":
        log = stall["shared_log"]
        lines += [
            "",
            f"Stall: the shared log holds {log['rows_left']} rows of {log['appended']} appended "
            f"(hubs compact every {log['compact_log_updates']} updates"
            + (", with Redis" if log["redis"] else ", without Redis")
            + ").",
        ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Bars per scenario: honest flush p99 during the attack against 250 ms, and hub memory
    growth against 100 MiB; red where the target is missed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plot")
        return
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, target, label in (
        (axes[0], "p99", TARGET_P99_MS, "honest flush p99 during the attack, ms (log)"),
        (axes[1], "growth", TARGET_GROWTH_MIB, "hub memory growth (peak - before), MiB"),
    ):
        for i, name in enumerate(names):
            r = results[name]
            if r.get("status") != "ran":
                ax.text(
                    i,
                    target * 0.5 if key == "p99" else target * 0.05,
                    r["status"],
                    ha="center",
                    rotation=90,
                    fontsize=8,
                    color="gray",
                )
                continue
            value = r["honest"]["during"]["p99_ms"] if key == "p99" else r["hub"]["growth_mib"]
            value = float(value or 0)
            ax.bar(i, max(value, 0.1), color="tab:green" if value < target else "tab:red")
        ax.axhline(target, color="black", linestyle="--", linewidth=1)
        ax.text(
            len(names) - 0.5, target, f" target {target:g}", va="bottom", ha="right", fontsize=8
        )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_title(label, fontsize=10)
        if key == "p99":
            ax.set_yscale("log")
    fig.suptitle(
        "The hub under issue 16's attacks (an honest agent flushing every 100 ms)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tree() -> dict[str, Any]:
    """The commit the hubs ran from, and whether crdtdoc/ or server/ had uncommitted changes
    (the hub subprocesses run the working tree)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT.parent, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "crdtdoc", "server").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "uncommitted": changed}


def save_results(
    results: dict[str, dict[str, Any]], windows: Windows, out: Path, took: float
) -> None:
    from benchmarks.common import package_version, save

    tree = _tree()
    report = {
        "windows": asdict(windows),
        "targets": {
            "flush_p99_ms": TARGET_P99_MS,
            "memory_growth_mib": TARGET_GROWTH_MIB,
            "recovery_s": TARGET_RECOVERY_S,
        },
        "limits": _limits(),
        "pace": PACE,
        "peers": {"crdtdoc": package_version("crdtdoc"), "pycrdt": package_version("pycrdt")},
        "tree": tree,
        "took_s": round(took, 1),
        "headline": [f"{name}: {one_line(name, r)}" for name, r in results.items()],
        "scenarios": results,
    }
    table = "# The hub under abuse (issue 16)\n\n" + markdown(results, windows, tree)
    if out.resolve() == RESULTS.resolve():
        plot(results, out / "abuse.png")
        save("abuse", report, table)  # also regenerates benchmarks/RESULTS.md
        return
    out.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "abuse", "machine": machine(), **report}
    (out / "abuse.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "abuse.md").write_text(table)
    plot(results, out / "abuse.png")


def rerender(out: Path) -> None:
    """Rewrites abuse.md, abuse.png and the JSON's headline from the recorded abuse.json (its
    date and figures unchanged), then benchmarks/RESULTS.md when `out` is the results folder."""
    report = json.loads((out / "abuse.json").read_text())
    results, windows = report["scenarios"], Windows(**report["windows"])
    report["headline"] = [f"{name}: {one_line(name, r)}" for name, r in results.items()]
    (out / "abuse.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results, windows, report.get("tree"))
    (out / "abuse.md").write_text("# The hub under abuse (issue 16)\n\n" + table)
    plot(results, out / "abuse.png")
    if out.resolve() == RESULTS.resolve():
        from benchmarks.report import write_results

        write_results()


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--attacker"]:
        attacker_main()
        return
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks abuse", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, default all: "
        + "; ".join(f"{name}: {what}" for name, what in SCENARIOS.items()),
    )
    parser.add_argument("--seconds", type=float, default=None, help="attack window (default 10)")
    parser.add_argument(
        "--quick", action="store_true", help="short windows and payloads, for a smoke run"
    )
    parser.add_argument(
        "--out",
        help="where abuse.json/.md/.png go (default: benchmarks/results, or its quick/ folder "
        "with --quick, so a smoke run never overwrites the recorded run)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="redraw abuse.md, abuse.png and the headline from the recorded abuse.json",
    )
    args = parser.parse_args(args_in)
    if args.out is None:
        args.out = str(RESULTS / "quick" if args.quick else RESULTS)
    if args.report_only:
        rerender(Path(args.out))
        return
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    windows = Windows()
    if args.quick:
        windows = Windows(baseline=1.0, attack=2.0, after=1.0, payload_bytes=256 * 1024)
    if args.seconds is not None:
        windows.attack = args.seconds
    started = time.monotonic()
    results = asyncio.run(run_all(names, windows))
    took = time.monotonic() - started
    save_results(results, windows, Path(args.out), took)
    print(markdown(results, windows))
    for name, r in results.items():
        print(f"{name}: {one_line(name, r)}")
    print(f"took {took:.0f} s")


if __name__ == "__main__":
    main()

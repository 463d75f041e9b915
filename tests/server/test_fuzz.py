"""Fuzzing a live hub process: random and mutated frames, whole and in tiny fragments, the
malformed-update classes of docs/ARCHITECTURE.md (what the engine gets wrong), and raw garbage
below the websocket layer.

The hub runs with a secret, as it must wherever agents may be hostile: the attackers are
authenticated agents (Byzantine insiders) with tokens of their own, plus a few connections with
no valid token at all. For a bounded time (CRDTDOC_FUZZ_SECONDS, default 6): the hub process
stays up, its memory stays bounded, honest agents keep converging (no attacker can write under
their client ids), and the stored room reloads identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect

import crdtdoc
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.protocol.messages import SyncStep1, SyncUpdate, encode_message
from crdtdoc.tokens import create_token
from tests.support.aio import run
from tests.support.builders import random_edit
from tests.support.hubs import HubProcess
from tests.support.stored import stored_replica
from tests.test_updates import _any_item, _gc_struct, _nested_any, _string_item, _update

SECONDS = float(os.environ.get("CRDTDOC_FUZZ_SECONDS", "6"))
FAST = Backoff(initial=0.05, maximum=0.3)


DESIGN_CLASSES = [
    _update(7, 2**32 - 1, _string_item(b"x")),  # clock reaching 2^32
    _update(7, 0, _any_item(_nested_any(30_000))),  # Any nested ~30k deep (segfaults yrs)
    _update(7, 0, _gc_struct(2**32 - 2)),  # a huge GC struct
    _update(7, 0, _string_item(b"ok")) + b"\x00\x01",  # trailing bytes
    _update(2**53, 0, _string_item(b"x")),  # a client id beyond 53 bits
    _update(2**53 - 1, 0, _string_item(b"x")),  # the largest allowed client id
]


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def frames(rng: random.Random, samples: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.25:
        return rng.randbytes(rng.randint(0, 200))
    if roll < 0.45:
        return encode_message(SyncUpdate(rng.choice(DESIGN_CLASSES)))
    message = bytearray(encode_message(SyncUpdate(rng.choice(samples))))
    for _ in range(rng.randint(1, 4)):  # mutate a real update
        kind = rng.random()
        pos = rng.randrange(len(message))
        if kind < 0.5:
            message[pos] = rng.randrange(256)
        elif kind < 0.75:
            del message[pos : pos + rng.randint(1, 8)]
        else:
            message[pos:pos] = rng.randbytes(rng.randint(1, 8))
        if not message:
            break
    return bytes(message)


SECRET = b"fuzz-secret-fuzz-secret-fuzz-32b"


async def attack(url: str, port: int, rng: random.Random, samples: list[bytes]) -> None:
    if rng.random() < 0.1:  # garbage below the websocket layer, a few bytes at a time
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(rng.randint(1, 6)):
                writer.write(rng.randbytes(rng.randint(1, 5)))
                await writer.drain()
            writer.close()
        return
    try:
        async with asyncio.timeout(2):
            who = rng.choice(["mallory", "mallory", "eve", "no-token"])
            tok = create_token(SECRET, who) if who != "no-token" else "forged.token"
            ws = await ws_connect(f"{url}?token={tok}", compression=None, max_size=None)
            await ws.send(encode_message(SyncStep1(b"\x00")))
            for _ in range(rng.randint(1, 3)):
                data = frames(rng, samples)
                if rng.random() < 0.3 and len(data) > 2:  # in tiny websocket fragments
                    cut = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 6)))
                    parts = [data[a:b] for a, b in zip([0, *cut], [*cut, len(data)], strict=True)]
                    await ws.send(parts)
                else:
                    await ws.send(data)
            await ws.close()
    except Exception:  # the hub closing on us is the expected outcome
        pass


def test_a_live_hub_survives_fuzzing_and_honest_agents_converge(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRDTDOC_SEED") or random.randrange(2**32))
    print(f"seed {seed} (replay with CRDTDOC_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "hub.db"
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    hub = HubProcess(db, 0, "--max-message-bytes", "262144", "--secret-file", str(secret_file))
    url = hub.start() + "/fuzz"
    samples: list[bytes] = []

    async def body() -> None:
        honest = [
            crdtdoc.connect(
                url, agent=f"honest{i}", token=create_token(SECRET, f"honest{i}"), backoff=FAST
            )
            for i in range(2)
        ]
        for a in honest:
            await a.start()
            a.on_update(lambda update, local: samples.append(update) if local else None)
            random_edit(a, rng)
        assert hub.proc is not None
        pid = hub.proc.pid
        baseline = rss_mib(pid)
        peak = baseline
        attacks = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SECONDS
        while loop.time() < deadline:
            await asyncio.gather(*(attack(url, hub.port, rng, samples) for _ in range(4)))
            attacks += 4
            for a in honest:
                random_edit(a, rng)
            assert hub.proc.poll() is None, f"seed {seed}: the hub died"
            peak = max(peak, rss_mib(pid))
        assert attacks > 50
        assert peak < baseline + 150, f"seed {seed}: hub memory grew {baseline}->{peak} MiB"
        for a in honest:
            await a.flush(timeout=20)
        for a in honest:
            for other in honest:
                await a.wait_for(other.version(), timeout=20)
        expected = honest[0].document("text").read()
        assert honest[1].document("text").read() == expected, f"seed {seed}"
        for a in honest:
            await a.close()
        hub.kill(signal.SIGTERM)
        stored = stored_replica(db, "fuzz")
        assert stored.document("text").read() == expected, f"seed {seed}"
        assert stored.version() == honest[0].version(), f"seed {seed}: the store differs"

    try:
        run(body(), timeout=SECONDS + 90)
    finally:
        hub.stop()

"""Convergence after partitions: how long, how many bytes, and nothing lost.

Agents edit a design document, a task list and an interface spec while a partition keeps some of
them apart; then the partition heals and we measure until every replica has the same version:

- time (and, on the simulated network, sync rounds) until all versions are equal;
- bytes sent while converging, against the minimal bytes: what each replica (and, with a hub, the
  hub) actually lacked, as one Yjs diff per replica (`encode_update(since=its version)` of the
  union of everyone's state);
- lost updates: local updates that are not in the final version (must be 0).

Two settings:

- sim: `crdtdoc.sim.SimNetwork`, in-process replicas meshed peer to peer, with seeded scheduling;
- hub: real replicas connected over websockets (127.0.0.1) to a `crdtdoc serve` process, each
  through a TCP proxy of its own that the benchmark cuts and heals (bytes are counted there).

Schedules: halves (two equal groups), isolated (one agent alone), minority (a third against the
rest), flapping (half the agents' links go down and up every three rounds, ending down), and, with
the hub, a hub restart (SIGKILLed before the edits, started again on the same port and database
as the heal; every agent edits offline meanwhile). Agents: 2, 10 and 50; partition
length: the number of edit rounds made while partitioned.

Run: `python -m benchmarks partitions` (a few minutes; `--quick` for a smaller grid).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import crdtdoc
from benchmarks.common import RESULTS, Progress, package_version, results_dir, save
from benchmarks.processes import HubProcess, hub_process
from crdtdoc import Replica
from crdtdoc.protocol.backoff import Backoff
from crdtdoc.sim import SimNetwork
from crdtdoc.updates import parse_update
from crdtdoc.versions import Version

SCHEDULES = ["halves", "isolated", "minority", "flapping"]
HUB_SCHEDULES = [*SCHEDULES, "hub-restart"]


# -- the workload ------------------------------------------------------------------------------


def seed_artifacts(replica: Replica) -> None:
    replica.document("design").write("# Design\n\nids are UUIDs\n")
    for title in ("schema", "api", "migration"):
        replica.tasks("backlog").add(title)
    replica.spec("api").set("getUser", "(id: UUID) -> User")


def edit(replica: Replica, rng: random.Random, step: int) -> None:
    """One edit an agent might make: a line of design, a task, a claim, a note, a spec member."""
    roll = rng.random()
    if roll < 0.4:
        doc = replica.document("design")
        text = doc.read()
        lines = text.count("\n")
        at = rng.randint(0, lines)
        index = 0
        for _ in range(at):
            index = text.index("\n", index) + 1
        doc.insert(index, f"{replica.agent} step {step}: {rng.choice(WORDS)}\n")
    elif roll < 0.55:
        replica.tasks("backlog").add(f"{replica.agent} {rng.choice(WORDS)} {step}")
    elif roll < 0.7:
        tasks = replica.tasks("backlog").list()
        if tasks:
            replica.tasks("backlog").note(rng.choice(tasks).id, f"{replica.agent}: looked")
    elif roll < 0.8:
        tasks = replica.tasks("backlog").list(status="open")
        if tasks:
            with contextlib.suppress(crdtdoc.CrdtdocError):
                replica.tasks("backlog").claim(rng.choice(tasks).id)
    else:
        replica.spec("api").set(f"op{rng.randint(0, 9)}", f"{replica.agent} v{step}")


WORDS = ["cache", "retry", "index", "schema", "lease", "queue", "token", "review", "shard"]


def missing_bytes(union: Replica, versions: Sequence[Version]) -> int:
    """What each replica lacked, as one diff each: the least any sync could send."""
    return sum(len(union.encode_update(since=v)) for v in versions if not union.version() <= v)


def lost_updates(updates: Sequence[bytes], final: Version) -> int:
    lost = 0
    for update in updates:
        parsed = parse_update(update)
        structs_in = all(s.end <= final.clocks.get(c, 0) for c, s in parsed.structs.items())
        deletes_in = parsed.delete_set.issubset(final.deleted)
        lost += not (structs_in and deletes_in)
    return lost


def apart(step: int, length: int) -> bool:
    """Flapping: whether the links are down at `step` (three rounds down, three up, ..., the last
    three down)."""
    return (length - 1 - step) // 3 % 2 == 0


def groups_for(schedule: str, n: int) -> tuple[list[int], list[int]]:
    """(cut off, kept) agents for a schedule."""
    if schedule == "isolated":
        cut = [n - 1]
    elif schedule == "minority":
        cut = list(range(max(1, n // 3)))
    else:  # halves, flapping
        cut = list(range(n // 2 or 1))
    return cut, [i for i in range(n) if i not in cut]


# -- simulated network -------------------------------------------------------------------------


def run_sim(n: int, schedule: str, length: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    replicas = [Replica(f"agent{i}") for i in range(n)]
    net = SimNetwork(replicas, seed=seed)
    seed_artifacts(replicas[0])
    net.run()
    net.converge()
    cut, kept = groups_for(schedule, n)
    net.partition(cut, kept)
    for step in range(length):
        if schedule == "flapping":
            if apart(step, length):
                net.partition(cut, kept)
            else:
                net.heal()
        for replica in replicas:
            edit(replica, rng, step)
        net.run()
    net.partition(cut, kept)  # end partitioned, whatever the flapping did
    net.run()
    union = net.reference()
    minimal = missing_bytes(union, [r.version() for r in replicas])
    sent_before, delivered_before = net.stats.bytes_sent, net.stats.delivered
    started = time.perf_counter()
    rounds = net.converge()
    seconds = time.perf_counter() - started
    messages = net.stats.delivered - delivered_before
    final = replicas[0].version()
    return {
        "setting": "sim",
        "agents": n,
        "schedule": schedule,
        "length": length,
        "seconds": seconds,
        "rounds": rounds,
        "messages": messages,
        "bytes": net.stats.bytes_sent - sent_before,
        "minimal_bytes": minimal,
        "lost": lost_updates(net.history, final),
        "equal": all(r.version() == final for r in replicas) and union.version() <= final,
    }


# -- through a real hub ------------------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy between one agent and the hub that can be cut (connections dropped, new ones
    refused) and healed; counts the bytes it carries."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.bytes = 0
        self.cut = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._links -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.cut:
                    break
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            for link in list(self._links):
                link.transport.abort()

    async def close(self) -> None:
        self.set_cut(True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxied_agents(
    hub: HubProcess, n: int, room: str
) -> AsyncIterator[tuple[list[crdtdoc.ConnectedReplica], list[CuttableProxy]]]:
    proxies = [CuttableProxy(hub.port) for _ in range(n)]
    ports = [await p.start() for p in proxies]
    fast = Backoff(initial=0.05, maximum=0.2)
    agents = [
        crdtdoc.connect(f"ws://127.0.0.1:{port}/{room}", agent=f"agent{i}", backoff=fast)
        for i, port in enumerate(ports)
    ]
    await asyncio.gather(*(a.start() for a in agents))
    try:
        yield agents, proxies
    finally:
        for a in agents:
            await a.close()
        for p in proxies:
            await p.close()


async def run_hub_async(
    hub: HubProcess, n: int, schedule: str, length: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    room = f"partition-{schedule}-{n}-{length}-{seed}"
    async with proxied_agents(hub, n, room) as (agents, proxies):
        seed_artifacts(agents[0])
        await agents[0].flush()
        for a in agents:
            await a.wait_for(agents[0].version(), timeout=30)
        local: list[bytes] = []
        for a in agents:
            a.on_update(lambda u, is_local: local.append(u) if is_local else None)
        cut, kept = groups_for(schedule, n)
        hub_known = agents[0].version()  # the hub has what everyone has now
        if schedule == "hub-restart":
            cut, kept = list(range(n)), []
            hub.kill()
        else:
            for i in cut:
                proxies[i].set_cut(True)
        for step in range(length):
            if schedule == "flapping":
                for i in cut:
                    proxies[i].set_cut(apart(step, length))
            for a in agents:
                edit(a, rng, step)
            await asyncio.sleep(0.02)
        await asyncio.gather(*(agents[i].flush(timeout=60) for i in kept))
        union = Replica("union")
        for a in agents:
            union.apply_update(a.encode_update())
        for i in kept:
            hub_known = hub_known.join(agents[i].version())
        versions = [a.version() for a in agents]
        minimal = missing_bytes(union, [*versions, hub_known])
        sent_before = sum(p.bytes for p in proxies)
        started = time.perf_counter()
        if schedule == "hub-restart":
            hub.start()  # the same port and database: the heal
        for p in proxies:
            p.set_cut(False)
        target = union.version()
        deadline = started + 120
        while not all(a.version() == target for a in agents):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        await asyncio.sleep(0.2)  # let the last acknowledgements pass the proxies
        final = agents[0].version()
        return {
            "setting": "hub",
            "agents": n,
            "schedule": schedule,
            "length": length,
            "seconds": seconds,
            "rounds": None,
            "messages": None,
            "bytes": sum(p.bytes for p in proxies) - sent_before,
            "minimal_bytes": minimal,
            "lost": lost_updates(local, final),
            "equal": all(a.version() == final for a in agents) and target <= final,
        }


# -- reporting ---------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | agents | schedule | partition length | converged | seconds | rounds "
        "| messages | bytes sent | minimal bytes | ratio | lost updates |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['bytes'] / r['minimal_bytes']:.1f}x" if r["minimal_bytes"] else "-"
        lines.append(
            f"| {r['setting']} | {r['agents']} | {r['schedule']} | {r['length']} "
            f"| {'yes' if r['equal'] else 'NO'} | {r['seconds']:.3f} "
            f"| {r['rounds'] if r['rounds'] is not None else '-'} "
            f"| {r['messages'] if r['messages'] is not None else '-'} | {r['bytes']:,} "
            f"| {r['minimal_bytes']:,} | {ratio} | {r['lost']} |"
        )
    return "\n".join(lines) + "\n"


def plot(
    rows: list[dict[str, Any]], base_length: int, base_agents: int, folder: Path = RESULTS
) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no plots")
        return []
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for col, setting in enumerate(("sim", "hub")):
        by_agents = [r for r in rows if r["setting"] == setting and r["length"] == base_length]
        for schedule in HUB_SCHEDULES:
            points = sorted(
                (r["agents"], r["seconds"]) for r in by_agents if r["schedule"] == schedule
            )
            if points:
                axes[0][col].plot(*zip(*points, strict=True), marker="o", label=schedule)
        axes[0][col].set_xlabel("agents")
        axes[0][col].set_ylabel("seconds to converge after heal")
        axes[0][col].set_title(f"{setting}: convergence time ({base_length} rounds apart)")
        axes[0][col].legend(fontsize=8)
        by_length = [
            r
            for r in rows
            if r["setting"] == setting and r["agents"] == base_agents and r["schedule"] == "halves"
        ]
        by_length.sort(key=lambda r: r["length"])
        if by_length:
            lengths = [r["length"] for r in by_length]
            axes[1][col].plot(lengths, [r["bytes"] for r in by_length], marker="o", label="sent")
            axes[1][col].plot(
                lengths, [r["minimal_bytes"] for r in by_length], marker="s", label="minimal"
            )
        axes[1][col].set_xlabel("partition length (edit rounds apart)")
        axes[1][col].set_ylabel("bytes")
        axes[1][col].set_title(f"{setting}: bytes to converge ({base_agents} agents, halves)")
        axes[1][col].legend(fontsize=8)
    fig.tight_layout()
    name = "partitions.png"
    fig.savefig(folder / name, dpi=100)
    plt.close(fig)
    return [name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CRDTDOC_SEED", "7")))
    parser.add_argument("--quick", action="store_true", help="a smaller grid, for a smoke run")
    args = parser.parse_args()
    agents = [2, 10] if args.quick else [2, 10, 50]
    lengths = [3, 10] if args.quick else [3, 10, 30]
    base_length, base_agents = 10, 10
    grid = [(n, s, base_length) for n in agents for s in SCHEDULES] + [
        (base_agents, "halves", length) for length in lengths if length != base_length
    ]
    hub_grid = [(n, s, base_length) for n in agents for s in HUB_SCHEDULES] + [
        (base_agents, "halves", length) for length in lengths if length != base_length
    ]
    print(f"seed {args.seed}")
    progress = Progress(len(grid) + len(hub_grid), "partitions")
    rows = []
    for n, schedule, length in grid:
        rows.append(run_sim(n, schedule, length, args.seed))
        r = rows[-1]
        progress.step(f"sim {n} agents {schedule} x{length}: {r['seconds']:.2f} s")
    with hub_process() as hub:
        for n, schedule, length in hub_grid:
            rows.append(asyncio.run(run_hub_async(hub, n, schedule, length, args.seed)))
            r = rows[-1]
            progress.step(f"hub {n} agents {schedule} x{length}: {r['seconds']:.2f} s")
    lost = sum(r["lost"] for r in rows)
    unequal = [r for r in rows if not r["equal"]]
    folder = results_dir(args.quick)
    plots = plot(rows, base_length, base_agents, folder)
    hub_rows = [r for r in rows if r["setting"] == "hub" and r["agents"] == max(agents)]
    headline = [
        f"{len(rows)} partition runs, {lost} lost updates, "
        f"{len(rows) - len(unequal)} of {len(rows)} converged to one version.",
    ]
    if hub_rows:
        worst = max(hub_rows, key=lambda r: r["seconds"])
        headline.append(
            f"Through the hub with {max(agents)} agents, the slowest heal ({worst['schedule']}) "
            f"took {worst['seconds']:.2f} s; median "
            f"{statistics.median(r['seconds'] for r in hub_rows):.2f} s."
        )
    save(
        "partitions",
        {
            "seed": args.seed,
            "peers": {"crdtdoc": package_version("crdtdoc"), "pycrdt": package_version("pycrdt")},
            "headline": headline,
            "rows": rows,
            "plots": plots,
        },
        "# Partitions\n\n" + markdown(rows),
        folder,
    )
    print(markdown(rows))
    if lost or unequal:
        sys.exit(f"FAILED: {lost} lost updates, {len(unequal)} runs did not converge")


if __name__ == "__main__":
    main()

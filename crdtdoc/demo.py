"""`crdtdoc demo`: the classic failures of agents sharing state, then the same agents on crdtdoc.

Four scenes, each played twice by the same scripted agents, who read, think (the interleaving is
fixed, so the run is the same every time), and write:

1. two agents append a section to the design document;
2. two agents each add the next database migration;
3. two agents each add a method to the interface spec;
4. two agents each pick the one open task and work on it.

First on a naive shared store (a dict of JSON values: read, modify, write back, as a shared file
or a key-value store without versions), then on crdtdoc, through a real hub on a temporary SQLite
file. The report says what each agent saw and what survived; `DemoResult` holds the same facts for
the tests.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdtdoc.client.connection import ConnectedReplica, connect
from crdtdoc.errors import AlreadyClaimed


@dataclass
class Scene:
    title: str
    naive: str  # what survived on the naive store
    crdtdoc: str  # what survived on crdtdoc
    naive_ok: bool
    crdtdoc_ok: bool
    log: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    scenes: list[Scene] = field(default_factory=list)


class NaiveStore:
    """What many agent setups share: a dict, read and written whole, last writer wins."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    async def read(self, key: str, default: Any) -> Any:
        await asyncio.sleep(0)
        value = self._data.get(key, default)
        return value.copy() if isinstance(value, (dict, list)) else value

    async def write(self, key: str, value: Any) -> None:
        await asyncio.sleep(0)
        self._data[key] = value

    async def keys(self, prefix: str) -> list[str]:
        await asyncio.sleep(0)
        return sorted(k for k in self._data if k.startswith(prefix))


async def _both(first: Any, second: Any) -> None:
    await asyncio.gather(first, second)


async def naive_scenes() -> list[tuple[str, bool, list[str]]]:
    store = NaiveStore()
    out: list[tuple[str, bool, list[str]]] = []
    thinking = asyncio.Barrier(2)

    # 1. sections of the design document
    await store.write("design", "# Design\n")
    log: list[str] = []

    async def add_section(agent: str, section: str) -> None:
        text = await store.read("design", "")
        log.append(f"{agent} read the design ({len(text)} characters)")
        await thinking.wait()  # both think at once
        await store.write("design", text + section)
        log.append(f"{agent} wrote the design back with {section.strip()!r}")

    await _both(add_section("alice", "## Storage\n"), add_section("bob", "## API\n"))
    design = await store.read("design", "")
    out.append((design, "## Storage" in design and "## API" in design, log))

    # 2. migrations: one file each, numbered after the newest file seen
    await store.write("migrations/266_users.sql", "...")
    log = []

    async def add_migration(agent: str, purpose: str) -> None:
        files = await store.keys("migrations/")
        number = max(int(name.split("/")[1].split("_")[0]) for name in files) + 1
        log.append(f"{agent} saw migration {number - 1} as the newest, picked {number}")
        await thinking.wait()
        await store.write(f"migrations/{number}_{purpose}.sql", "...")

    await _both(add_migration("alice", "orders"), add_migration("bob", "invoices"))
    migrations = [k.split("/")[1] for k in await store.keys("migrations/")]
    numbers = [m.split("_")[0] for m in migrations]
    out.append((", ".join(migrations), len(set(numbers)) == len(numbers) == 3, log))

    # 3. interface methods
    await store.write("api", {"getUser": "(id) -> User"})
    log = []

    async def add_method(agent: str, name: str, signature: str) -> None:
        api = await store.read("api", {})
        log.append(f"{agent} read the API: {', '.join(sorted(api))}")
        await thinking.wait()
        api[name] = signature
        await store.write("api", api)

    await _both(
        add_method("alice", "getUserByEmail", "(email) -> User"),
        add_method("bob", "getUsersByRole", "(role) -> User[]"),
    )
    api = await store.read("api", {})
    out.append((", ".join(sorted(api)), {"getUserByEmail", "getUsersByRole"} <= set(api), log))

    # 4. one open task
    await store.write("task", {"title": "rotate keys", "owner": None})
    log = []
    workers: list[str] = []

    async def take(agent: str) -> None:
        task = await store.read("task", {})
        if task["owner"] is None:
            log.append(f"{agent} saw the task unclaimed")
            await thinking.wait()
            task["owner"] = agent
            await store.write("task", task)
            workers.append(agent)
            log.append(f"{agent} claimed it and started working")

    await _both(take("alice"), take("bob"))
    out.append((f"worked by {' and '.join(workers)}", len(workers) == 1, log))
    return out


async def crdtdoc_scenes(url: str) -> list[tuple[str, bool, list[str]]]:
    out: list[tuple[str, bool, list[str]]] = []
    thinking = asyncio.Barrier(2)
    async with connect(url, agent="alice") as alice, connect(url, agent="bob") as bob:

        async def settle() -> None:
            await alice.flush()
            await bob.flush()
            await alice.wait_for(bob.version(), timeout=10)
            await bob.wait_for(alice.version(), timeout=10)

        # 1. sections of the design document: each agent rewrites the whole text it read.
        alice.document("design").write("# Design\n")
        await settle()
        log: list[str] = []

        async def add_section(r: ConnectedReplica, section: str) -> None:
            text = r.document("design").read()
            log.append(f"{r.agent} read the design ({len(text)} characters)")
            await thinking.wait()
            r.document("design").write(text + section)  # a minimal diff of what it read
            log.append(f"{r.agent} wrote the design back with {section.strip()!r}")

        await _both(add_section(alice, "## Storage\n"), add_section(bob, "## API\n"))
        await settle()
        design = alice.document("design").read()
        out.append((design, "## Storage" in design and "## API" in design, log))

        # 2. migrations: numbers from the hub's sequence
        log = []
        numbers: list[int] = []

        async def add_migration(r: ConnectedReplica, purpose: str) -> None:
            await thinking.wait()
            number = 266 + await r.next_number("migrations")
            numbers.append(number)
            r.map("migrations").set(f"{number}_{purpose}.sql", "...")
            log.append(f"{r.agent} got migration number {number} from the hub")

        alice.map("migrations").set("266_users.sql", "...")
        await settle()
        await _both(add_migration(alice, "orders"), add_migration(bob, "invoices"))
        await settle()
        migrations = sorted(alice.map("migrations").to_dict())
        out.append((", ".join(migrations), len(set(numbers)) == 2 and len(migrations) == 3, log))

        # 3. interface methods: each member is its own register
        alice.spec("api").set("getUser", "(id) -> User")
        await settle()
        log = []

        async def add_method(r: ConnectedReplica, name: str, signature: str) -> None:
            log.append(f"{r.agent} read the API: {', '.join(r.spec('api').members())}")
            await thinking.wait()
            r.spec("api").set(name, signature)

        await _both(
            add_method(alice, "getUserByEmail", "(email) -> User"),
            add_method(bob, "getUsersByRole", "(role) -> User[]"),
        )
        await settle()
        members = alice.spec("api").members()
        out.append(
            (", ".join(sorted(members)), {"getUserByEmail", "getUsersByRole"} <= set(members), log)
        )

        # 4. one open task: an exclusive claim through the hub
        task_id = alice.tasks("backlog").add("rotate keys")
        await settle()
        log = []
        workers: list[str] = []

        async def take(r: ConnectedReplica) -> None:
            log.append(f"{r.agent} saw the task {r.tasks('backlog').get(task_id).status}")
            await thinking.wait()
            try:
                lease = await r.claim_task("backlog", task_id, ttl=30)
            except AlreadyClaimed as exc:
                log.append(f"{r.agent} was told it is claimed by {exc.holder}; picks other work")
                return
            workers.append(r.agent)
            log.append(f"{r.agent} claimed it (fencing token {lease.token}) and started working")
            await lease.release()

        await _both(take(alice), take(bob))
        out.append((f"worked by {' and '.join(workers)}", len(workers) == 1, log))
    return out


TITLES = [
    "Two agents append a section to the design document",
    "Two agents each add the next database migration",
    "Two agents each add a method to the interface spec",
    "Two agents pick the one open task",
]
FAILURES = [
    "a section was lost",
    "two migrations numbered 267",
    "a method was lost",
    "the task was worked twice",
]


async def run_demo(show: bool = True) -> DemoResult:
    from crdtdoc.server.config import HubConfig
    from crdtdoc.server.hub import Hub

    naive = await naive_scenes()
    with tempfile.TemporaryDirectory() as tmp:
        async with Hub(HubConfig(db=str(Path(tmp) / "demo.db"), port=0)) as hub:
            ours = await crdtdoc_scenes(f"{hub.url}/demo")
    result = DemoResult()
    for title, failure, (n_text, n_ok, n_log), (c_text, c_ok, c_log) in zip(
        TITLES, FAILURES, naive, ours, strict=True
    ):
        result.scenes.append(Scene(title, n_text, c_text, n_ok, c_ok, [*n_log, *c_log]))
        if show:
            print(f"\n== {title}")
            print("  naive shared store:")
            for line in n_log:
                print(f"    {line}")
            print(f"    survived: {n_text.strip()!r}  {'OK' if n_ok else '<- ' + failure}")
            print("  crdtdoc:")
            for line in c_log:
                print(f"    {line}")
            print(f"    survived: {c_text.strip()!r}  {'OK' if c_ok else '<- FAILED'}")
    if show:
        lost = sum(not s.naive_ok for s in result.scenes)
        kept = sum(s.crdtdoc_ok for s in result.scenes)
        print(
            f"\nThe naive store went wrong in {lost} of {len(result.scenes)} scenes; crdtdoc got "
            f"{kept} of {len(result.scenes)} right."
        )
    return result

"""A room whose stored log already holds damaged entries (written before any gate refused them)
still loads, answers `/rooms/<room>/state`, and lets honest agents write and flush, also after
the hub restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map
from websockets.asyncio.client import connect as ws_connect

import crdtdoc
from crdtdoc import Replica
from crdtdoc.protocol.messages import (
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from crdtdoc.roots import AGENTS_ROOT, ARTIFACTS_ROOT
from crdtdoc.server.commit import Append
from crdtdoc.server.store import SqliteStore
from tests.server.test_web import fetch
from tests.support.aio import run
from tests.support.hubs import running_hub
from tests.support.yjs_items import TYPE_REFS, RawWriter, apply_raw, first_item, nested_type_id

ROOM = "damaged"
EVIL = 424242

# What the stored log holds besides honest work: content kinds where a plain value belongs, and
# where a character belongs (JSON content is left out: yrs cannot read back its own encoding of
# it, and crdtdoc's parser refuses it).
Damage = list[tuple[str, Any]]
MAP_DAMAGE: Damage = [
    ("binary", None),
    ("doc", None),
    ("type", "XmlElement"),
    ("type", "Map"),
    ("deleted", None),
    ("any", [{"blob": b"\x00"}]),
    ("any", [7]),
    ("any", [{"kind": "map"}]),
]
TEXT_DAMAGE: Damage = [("format", None), ("embed", None), ("type", "Map")]
# Entries the semantic gate refuses in new updates (docs/ARCHITECTURE.md).
GATED_MAP_DAMAGE: Damage = [("format", None), ("string", "mallory"), ("embed", None)]
GATED_TEXT_DAMAGE: Damage = [("binary", None), ("any", [7])]


def damaged_log(map_damage: Damage, text_damage: Damage) -> list[bytes]:
    """An honest team's updates, then damaged entries in every map and in the text."""
    alice = Replica(agent="alice", client_id=11)
    log: list[bytes] = []
    alice.on_update(lambda update, local: log.append(update))
    alice.map("cfg").set("a", 1)
    tid = alice.tasks("backlog").add("task one")
    alice.tasks("backlog").claim(tid)
    alice.spec("api").set("User.id", "UUID")
    alice.document("design").insert(0, "hello world")
    evil = RawWriter(EVIL)
    first = first_item(alice.encode_update(), "design")
    for n, (kind, value) in enumerate(map_damage):
        for root in (ARTIFACTS_ROOT, AGENTS_ROOT, "cfg", "backlog", "api"):
            key = str(EVIL + n) if root == AGENTS_ROOT else f"bad{n}"
            log.append(evil.entry(key, kind, value, root=root))
    for kind, value in text_damage:
        log.append(evil.element(kind, value, origin=first))
    # Byte-valid entries of the wrong shape that any gate lets through.
    full = alice.encode_update()
    task = nested_type_id(full, tid, "backlog")
    claims = nested_type_id(full, "claims", task)
    log.append(evil.entry("²", "any", ["mallory"], root=AGENTS_ROOT))  # isdigit(), not int()
    log.append(evil.entry("mallory", "type", "XmlFragment", parent=claims))
    log.append(evil.entry("labels", "any", [7], parent=task))
    log.append(evil.entry("spreadsheet", "any", ["spreadsheet"], root=ARTIFACTS_ROOT))
    return log


def store_log(db: Path, log: list[bytes]) -> None:
    """Writes the log straight into the hub's database, as a hub before the gate stored it."""
    store = SqliteStore(str(db))
    try:
        store.commit([Append(ROOM, seq, data) for seq, data in enumerate(log, start=1)])
    finally:
        store.close()


def stored(db: Path) -> Replica:
    """What the database holds now, applied straight to a replica's document (no gate)."""
    store = SqliteStore(str(db))
    try:
        room = store.load(ROOM)
    finally:
        store.close()
    replica = Replica(agent="reader")
    for data in ([room.snapshot] if room.snapshot else []) + room.updates:
        apply_raw(replica, data)
    return replica


async def state_of(url: str) -> dict[str, Any]:
    """`/rooms/<room>/state`, which must answer 200 with JSON."""
    status, _, text = await fetch(f"{url}/rooms/{ROOM}/state")
    assert status == 200, text
    state: dict[str, Any] = json.loads(text)
    return state


def artifacts_of(state: dict[str, Any]) -> dict[str, Any]:
    return {a["name"]: a for a in state["artifacts"]}


@pytest.mark.parametrize(
    ("map_damage", "text_damage"),
    [(MAP_DAMAGE, TEXT_DAMAGE), (GATED_MAP_DAMAGE, GATED_TEXT_DAMAGE)],
    ids=["damage", "gated-damage"],
)
def test_a_room_with_damaged_entries_loads_and_answers_state(
    tmp_path: Path, map_damage: Damage, text_damage: Damage
) -> None:
    db = tmp_path / "hub.db"
    store_log(db, damaged_log(map_damage, text_damage))

    async def body() -> None:
        for _ in range(2):  # and again after a restart
            async with running_hub(db) as hub:
                shown = artifacts_of(await state_of(hub.url))
                assert set(shown) == {"cfg", "backlog", "api", "design"}
                assert "task one" in [t["title"] for t in shown["backlog"]["tasks"]]
                assert [m["member"] for m in shown["api"]["members"]] == ["User.id"]
                assert shown["design"]["text"].startswith("hello world")

    run(body())


@pytest.mark.parametrize(
    ("map_damage", "text_damage"),
    [(MAP_DAMAGE, TEXT_DAMAGE), (GATED_MAP_DAMAGE, GATED_TEXT_DAMAGE)],
    ids=["damage", "gated-damage"],
)
def test_a_stock_client_writes_into_a_room_with_damaged_entries(
    tmp_path: Path, map_damage: Damage, text_damage: Damage
) -> None:
    """A plain y-protocols client (pycrdt, no crdtdoc checks, as a Yjs app) syncs and writes;
    the hub (which reads the registries and the specs' freezes on each write) takes it."""
    db = tmp_path / "hub.db"
    store_log(db, damaged_log(map_damage, text_damage))

    async def body() -> None:
        async with running_hub(db) as hub:
            ws = await ws_connect(f"{hub.url}/{ROOM}", max_size=None, compression=None)
            doc: Doc[Any] = Doc()
            await ws.send(encode_message(SyncStep1(doc.get_state())))
            while True:
                message = decode_message(await ws.recv())  # type: ignore[arg-type]
                if isinstance(message, SyncStep2):
                    doc.apply_update(message.update)
                    break
            before = doc.get_state()
            with doc.transaction():
                doc.get(AGENTS_ROOT, type=Map)[str(doc.client_id)] = "yjs-app"
                doc.get("cfg", type=Map)["b"] = 2.0
                spec = doc.get("api", type=Map)
                spec["m:yjs"] = {"member": "User.email", "value": "str", "by": "yjs-app"}
            await ws.send(encode_message(SyncUpdate(doc.get_update(before))))
            for _ in range(200):
                shown = artifacts_of(await state_of(hub.url))
                members = [m["member"] for m in shown["api"]["members"]]
                if "User.email" in members:
                    break
                await asyncio.sleep(0.05)
            assert members == ["User.email", "User.id"]
            await ws.close()

    run(body())
    now = stored(db)
    assert now.map("cfg").get("b") == 2 and now.spec("api").get("User.email") == "str"


def write_and_flush_case(map_damage: Damage, text_damage: Damage, tmp_path: Path) -> None:
    """Honest crdtdoc agents write every artifact and flush, before and after a restart."""
    db = tmp_path / "hub.db"
    store_log(db, damaged_log(map_damage, text_damage))

    async def body() -> None:
        async with running_hub(db) as hub:
            text_before = artifacts_of(await state_of(hub.url))["design"]["text"]
            async with crdtdoc.connect(f"{hub.url}/{ROOM}", agent="bob") as bob:
                assert bob.map("cfg").get("a") == 1
                bob.map("cfg").set("b", 2)
                tasks = bob.tasks("backlog")
                tid = tasks.add("task two")
                tasks.claim(tid)
                bob.spec("api").set("User.email", "str")
                bob.document("design").append("!")
                await bob.flush()
            state = await state_of(hub.url)
            assert any(c["agent"] == "bob" for c in state["changes"])

        async with running_hub(db) as hub:  # a restart: the room loads from the store again
            shown = artifacts_of(await state_of(hub.url))
            assert shown["design"]["text"] == text_before + "!"
            assert "task two" in [t["title"] for t in shown["backlog"]["tasks"]]
            async with crdtdoc.connect(f"{hub.url}/{ROOM}", agent="carol") as carol:
                assert carol.spec("api").get("User.email") == "str"
                carol.map("cfg").set("c", 3)
                await carol.flush()

    run(body())
    now = stored(db)
    assert {k: now.map("cfg").get(k) for k in "abc"} == {"a": 1, "b": 2, "c": 3}
    assert now.agents()[11] == "alice"


def test_honest_agents_write_and_flush_in_a_room_with_damaged_entries(tmp_path: Path) -> None:
    write_and_flush_case(MAP_DAMAGE, TEXT_DAMAGE, tmp_path)


def test_honest_agents_write_and_flush_in_a_room_with_gated_entries(tmp_path: Path) -> None:
    """Entries the gate now refuses, stored before it existed: the hub and its clients still
    take the room as stored."""
    write_and_flush_case(GATED_MAP_DAMAGE, GATED_TEXT_DAMAGE, tmp_path)


def test_a_room_whose_registries_hold_format_items_loads(tmp_path: Path) -> None:
    """The repro's entry in `__crdtdoc_artifacts` and `__crdtdoc_agents`: the hub reads both
    registries on load and on each write (frozen specs), and serves the room."""
    db = tmp_path / "hub.db"
    alice = Replica(agent="alice", client_id=11)
    log: list[bytes] = []
    alice.on_update(lambda update, local: log.append(update))
    alice.spec("api").set("User.id", "UUID")
    evil = RawWriter(EVIL)
    log.append(evil.entry("fmt", "format", root=ARTIFACTS_ROOT))
    log.append(evil.entry(str(EVIL), "format", root=AGENTS_ROOT))
    for n, name in enumerate(TYPE_REFS):  # every nested type where a kind or a name belongs
        if name == "XmlHook":
            continue  # see test_a_room_holding_an_xml_hook_loads
        log.append(evil.entry(f"t-{name}", "type", name, root=ARTIFACTS_ROOT))
        log.append(evil.entry(str(EVIL + n), "type", name, root=AGENTS_ROOT))
    store_log(db, log)

    async def body() -> None:
        for _ in range(2):  # and again after a restart
            async with running_hub(db) as hub:
                shown = artifacts_of(await state_of(hub.url))
                assert shown["api"]["members"][0]["value"] == "UUID"

    run(body())


@pytest.mark.xfail(
    reason="yrs re-encodes an XmlHook without its name, so the room's own state no longer "
    "parses (crdtdoc.updates) and the room cannot be loaded: the parser or the gate must "
    "account for it, not the readers",
    strict=False,
)
def test_a_room_holding_an_xml_hook_loads(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    alice = Replica(agent="alice", client_id=11)
    log: list[bytes] = []
    alice.on_update(lambda update, local: log.append(update))
    alice.spec("api").set("User.id", "UUID")
    log.append(RawWriter(EVIL).entry("hook", "type", "XmlHook", root="cfg"))
    store_log(db, log)

    async def body() -> None:
        async with running_hub(db) as hub:
            assert artifacts_of(await state_of(hub.url))["api"]["members"]

    run(body())

"""Randomized stock Yjs clients against a real hub: legal Yjs content is never refused.

Five stock `Y.Doc`s, each with a y-websocket `WebsocketProvider` (yjs_fuzz_peer.mjs), make about
3,000 seeded random edits of every kind Yjs's own randomized tests make (text with formatting,
embeds and embedded types, maps and arrays of every value kind and nested types, XML elements,
text and attributes, subdocuments, undo/redo), with providers going offline and back: concurrent
offline edits, and edits inside nested types that another client deleted meanwhile (the deleted
content is garbage-collected: the ranges a semantic gate on the hub must read right). The hub
must close no connection, every client must end in one state, a crdtdoc replica joining later
must reach the same state vector and delete set, and after a restart of the hub on the same
database a fresh stock client must read the same content.

The seed comes from $CRDTDOC_FUZZ_SEED, else at random; it is printed, with the command that
repeats the run. The seed fixes every random choice, not the interleaving with the network.

Three kinds of legal Yjs content are left out of the randomized run because the hub cannot keep
them (pycrdt 0.14.13, that is yrs); `test_known_incompatibility` pins each one with a strict
xfail, so a hub that keeps one makes that test fail until its kind is put back into the run
(`WITHOUT`). Each is refused (1007), and a stock client, resending the update on every reconnect,
then never syncs again:
- `xmlhook`: yrs cannot decode a `Y.XmlHook` (it reads no hook name after the type ref; Yjs
  writes one).
- `bigint`: yrs keeps a BigInt map value (lib0 type 122) as a float. Before the hub refused it,
  clients that synced from the hub's state read `1234567890123` where the writer had
  `1234567890123n`.
- `subdoc-meta`: yrs drops the `meta` option of a subdocument (a `Y.Doc` as a value). Before the
  hub refused it, clients that synced from the hub's state read `meta: null`.

Stock Yjs itself makes items whose origin is their right origin: `UndoManager.undo()` restoring
deleted content does (redoItem finds the left and the right neighbour by two separate walks
through `redone` copies, which can end on one item). About one run in eight holds one, so the hub
(and any gate on it) must accept them. Yjs then orders such an item by arrival order: about one
run in several hundred ends with clients holding the same items and deletions in different
orders. That run is an xfail (reported with its seed and the saved states), not a failure:
every refusal and every other divergence still fails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import crdtdoc
from crdtdoc.idset import IdSet
from tests.interop.test_yjs_peer import node_peer_available
from tests.support.hubs import HubProcess

HERE = Path(__file__).parent
SCRIPT = HERE / "yjs_fuzz_peer.mjs"
ROOM = "fuzz"
CLIENTS = 5
OPS = 3000
WITHOUT = "xmlhook,bigint,subdoc-meta"  # see the module docstring and test_known_incompatibility
# Rate limits are not under test here (all clients share 127.0.0.1, hence one bucket).
HUB_ARGS = ("--updates-per-second", "100000", "--awareness-per-second", "10000")
NORMAL_CLOSES = (1000, 1001)


def fuzz_seed() -> int:
    """$CRDTDOC_FUZZ_SEED if set, else a random seed."""
    given = os.environ.get("CRDTDOC_FUZZ_SEED")
    return int(given) if given else random.randrange(2**31)


def node(*args: str, timeout: float = 120) -> dict[str, Any]:
    """Runs the fuzz peer and returns the JSON object it prints last."""
    proc = subprocess.run(
        ["node", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"node {SCRIPT.name} {' '.join(args)} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def refusals(closes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Closes that came from the hub with anything but a normal code."""
    return [c for c in closes if not c["local"] and c["code"] not in NORMAL_CLOSES]


def hub_refusals(hub: HubProcess) -> list[str]:
    """The hub's log lines about refused input (messages, stored updates, snapshots)."""
    return [line for line in hub.stderr_text().splitlines() if "refused" in line]


def clocks(state_vector: dict[str, int]) -> dict[int, int]:
    """A state vector from the Node peer's JSON (client ids are object keys there)."""
    return {int(client): clock for client, clock in state_vector.items()}


def first_difference(a: str, b: str) -> str:
    """Where two renderings part, with some context."""
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return f"at {at}:\n  {a[max(0, at - 200) : at + 200]}\n  {b[max(0, at - 200) : at + 200]}"


def divergence(result: dict[str, Any]) -> str:
    """How the clients of a fuzz run differ from the first one."""
    first = result["clients"][0]
    return "; ".join(
        f"client {c['clientID']} (synced: {c['synced']}): state vector {c['stateVector']} vs "
        f"{first['stateVector']}; rendering {first_difference(c['rendering'], first['rendering'])}"
        for c in result["clients"][1:]
        if c["rendering"] != first["rendering"] or c["stateVector"] != first["stateVector"]
    )


def self_origin_items(result: dict[str, Any]) -> list[str]:
    """Items (client:clock) whose origin is their right origin, in any client."""
    return sorted({item for c in result["clients"] for item in c["selfOriginItems"]})


def yjs_ordering_divergence(result: dict[str, Any]) -> bool:
    """Whether clients that differ hold the same items and deletions (all synced) while some
    items have origin = right origin: Yjs integrates those differently by arrival order."""
    first = result["clients"][0]
    return bool(self_origin_items(result)) and all(
        c["synced"]
        and c["stateVector"] == first["stateVector"]
        and c["deleteSet"] == first["deleteSet"]
        for c in result["clients"]
    )


def test_stock_yjs_clients_are_never_refused(tmp_path: Path) -> None:
    """The randomized run (see the module docstring)."""
    node_peer_available()
    seed = fuzz_seed()
    rerun = f"CRDTDOC_FUZZ_SEED={seed} python -m pytest tests/interop/test_yjs_fuzz.py"
    print(f"yjs fuzz seed {seed}; to repeat: {rerun}")
    hub = HubProcess(tmp_path / "hub.db", 0, "--log-level", "info", *HUB_ARGS)
    url = hub.start()
    try:
        args = ["--clients", str(CLIENTS), "--ops", str(OPS), "--without", WITHOUT]
        result = node("fuzz", url, ROOM, str(seed), *args)
        saved = tmp_path / "fuzz-result.json"  # every client's state too, if they differ
        saved.write_text(json.dumps(result))
        print(
            f"{result['ops']} ops ({result['tally']}) in {result['editedMs']} ms, "
            f"{result['races']} delete-while-offline-edit races, converged after "
            f"{result['totalMs']} ms; GC structs per client: "
            f"{[c['gcRanges'] for c in result['clients']]}; self-origin items (from undo): "
            f"{self_origin_items(result)} {result['selfOriginBy']}"
        )
        refused = Counter(
            (c["clientID"], close["code"], close["reason"])
            for c in result["clients"]
            for close in refusals(c["closes"])
        )
        assert not refused, (
            f"seed {seed}: the hub refused stock Yjs content ((client, code, reason): times): "
            f"{dict(refused)}\n" + "\n".join(hub_refusals(hub)[:10])
        )
        assert not hub_refusals(hub), f"seed {seed}: " + "\n".join(hub_refusals(hub)[:10])
        errors = {c["clientID"]: c["errors"] for c in result["clients"] if c["errors"]}
        assert not errors, f"seed {seed}: errors in the Yjs clients: {errors}"
        if not result["converged"] and yjs_ordering_divergence(result):
            pytest.xfail(
                f"seed {seed}: the clients hold the same items and deletions but order some "
                "differently, around items Yjs's UndoManager made with origin = right origin "
                f"{self_origin_items(result)[:5]}: a Yjs issue (module docstring); see {saved}"
            )
        assert result["converged"], (
            f"seed {seed}: clients differ (see {saved}): {divergence(result)}"
        )
        state = clocks(result["stateVector"])
        deleted = IdSet(
            {
                int(c): [(clock, clock + n) for clock, n in rs]
                for c, rs in result["deleteSet"].items()
            }
        )

        with crdtdoc.connect_blocking(f"{url}/{ROOM}", agent="fuzz-checker") as replica:
            replica.wait_for(crdtdoc.Version(state), timeout=20)
            version = replica.version()
            theirs = {c: k for c, k in version.clocks.items() if c != replica.client_id}
            assert theirs == state, f"seed {seed}: the replica's state vector differs"
            assert version.deleted == deleted, f"seed {seed}: the replica's delete set differs"

        hub.kill(signal.SIGTERM)
        hub.port = 0
        url = hub.start()  # the same database: the stored log (and snapshot) reload
        fresh = node("read", url, ROOM)
        assert not refusals(fresh["closes"]), f"seed {seed}: {fresh['closes']}"
        assert fresh["rendering"] == result["rendering"], (
            f"seed {seed}: after the restart a fresh client reads other content, "
            + first_difference(fresh["rendering"], result["rendering"])
        )
        fresh_state = clocks(fresh["stateVector"])
        assert {c: k for c, k in fresh_state.items() if c in state} == state, f"seed {seed}"
        assert fresh["deleteSet"] == result["deleteSet"], f"seed {seed}: the delete set differs"
        assert not hub_refusals(hub), f"seed {seed}: " + "\n".join(hub_refusals(hub)[:10])
    finally:
        hub.stop()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            kind, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)
        )
        for kind, reason in [
            ("xmlhook", "yrs cannot decode a Y.XmlHook: the hub refuses it"),
            ("bigint", "yrs keeps a BigInt as a float: the hub refuses it (or alters it)"),
            ("subdoc-meta", "yrs drops a subdocument's meta: the hub refuses it (or drops it)"),
        ]
    ],
)
def test_known_incompatibility(tmp_path: Path, kind: str) -> None:
    """One edit of a kind the randomized run leaves out; a fresh client must read it as written.
    Strict xfail: once the hub handles it, this fails: then drop the kind from `WITHOUT`."""
    node_peer_available()
    hub = HubProcess(tmp_path / "hub.db", 0, *HUB_ARGS)
    url = hub.start()
    try:
        result = node("single", url, kind, kind, timeout=60)
    finally:
        hub.stop()
    assert not refusals(result["writer"]["closes"]), result["writer"]["closes"]
    assert result["reader"]["rendering"] == result["writer"]["rendering"]

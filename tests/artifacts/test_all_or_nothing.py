"""Every write API is all or nothing: a str that no Yjs document can hold (a lone UTF-16
surrogate) is refused with `InvalidValue` before anything changes (issue 17, item 5: `write`
once applied the diff's deletion, synced it, then raised a bare UnicodeEncodeError; map and task
writes made pycrdt panic)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crdtdoc import Replica
from crdtdoc.errors import InvalidValue

LONE = "hello \udc80 there"


def _replica() -> tuple[Replica, list[bytes]]:
    replica = Replica("a")
    replica.document("d").insert(0, "hello world")
    replica.map("m").set("k", "v")
    tasks = replica.tasks("t")
    tasks.add("first")
    replica.spec("s").set("member", 1)
    sent: list[bytes] = []
    replica.on_update(lambda update, local: sent.append(update))
    return replica, sent


def _task(replica: Replica) -> str:
    return replica.tasks("t").list()[0].id


WRITES: dict[str, Callable[[Replica], None]] = {
    "document.write": lambda r: r.document("d").write(LONE),
    "document.insert": lambda r: r.document("d").insert(3, LONE),
    "document.replace": lambda r: r.document("d").replace("world", LONE),
    "map.set value": lambda r: r.map("m").set("k", LONE),
    "map.set nested": lambda r: r.map("m").set("k", {"a": [LONE]}),
    "map.set key": lambda r: r.map("m").set(LONE, 1),
    "map.set object key": lambda r: r.map("m").set("k", {LONE: 1}),
    "tasks.add": lambda r: r.tasks("t").add(LONE),
    "tasks.add labels": lambda r: r.tasks("t").add("ok", labels=[LONE]),
    "tasks.update": lambda r: r.tasks("t").update(_task(r), title="fine", description=LONE),
    "tasks.note": lambda r: r.tasks("t").note(_task(r), LONE),
    "tasks.complete": lambda r: r.tasks("t").complete(_task(r), note=LONE),
    "spec.set value": lambda r: r.spec("s").set("member", LONE),
    "spec.set member": lambda r: r.spec("s").set(LONE, 1),
    "artifact name": lambda r: r.document(LONE).insert(0, "x"),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_lone_surrogate_is_refused_before_anything_changes(name: str) -> None:
    replica, sent = _replica()
    before = replica.version()
    content = replica.encode_update()
    with pytest.raises(InvalidValue, match="lone surrogate"):
        WRITES[name](replica)
    assert replica.version() == before and not sent, f"{name} changed something"
    assert replica.encode_update() == content
    assert replica.document("d").read() == "hello world"


def test_an_agent_name_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidValue, match="agent name"):
        Replica("bad\ud800name")


def test_the_command_line_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    from crdtdoc.agent_cli import read_text

    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(InvalidValue, match=r"not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_text(str(latin))

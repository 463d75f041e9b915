"""The simulated network itself: each fault does what it says."""

from __future__ import annotations

from crdtdoc import Replica
from crdtdoc.sim import SimNetwork


def _net(n: int = 3, **faults: float) -> SimNetwork:
    return SimNetwork([Replica(f"r{i}") for i in range(n)], seed=1, **faults)  # type: ignore[arg-type]


def test_edits_reach_everyone_when_nothing_fails() -> None:
    net = _net()
    net.run()
    net.nodes[0].document("d").insert(0, "hi")
    net.run()
    assert all(r.document("d").read() == "hi" for r in net.nodes)
    assert net.converged()


def test_partition_keeps_groups_apart_until_heal() -> None:
    net = _net(4)
    net.run()
    net.partition([0, 1], [2, 3])
    net.nodes[0].document("d").insert(0, "left")
    net.nodes[2].document("d").insert(0, "right")
    net.run()
    assert net.nodes[1].document("d").read() == "left"
    assert net.nodes[3].document("d").read() == "right"
    assert net.converge() <= 1
    texts = {r.document("d").read() for r in net.nodes}
    assert len(texts) == 1 and "left" in texts.pop()


def test_dropped_message_is_recovered_by_the_next_update_or_anti_entropy() -> None:
    net = _net(2)
    net.run()
    net.nodes[0].document("d").insert(0, "a")
    net.drop(0, 1)
    net.run()
    assert net.nodes[1].document("d").read() == ""
    net.nodes[0].document("d").insert(1, "b")  # depends on the lost one: triggers a resync
    net.run()
    assert net.nodes[1].document("d").read() == "ab"
    net.nodes[0].document("d").insert(2, "c")
    net.drop(0, 1)
    assert not net.converged()
    assert net.converge() == 1


def test_duplicates_and_reordering_are_harmless() -> None:
    net = _net(3, duplicate=1.0, reorder=1.0, max_delay=5)
    for i, r in enumerate(net.nodes):
        for k in range(5):
            r.document("d").insert(0, f"{i}{k}")
    net.run()
    assert net.stats.duplicated > 0
    net.converge()
    assert len({r.document("d").read() for r in net.nodes}) == 1


def test_disconnected_node_catches_up_on_reconnect() -> None:
    net = _net(3)
    net.run()
    net.disconnect(2)
    net.nodes[0].document("d").insert(0, "while you were away")
    net.run()
    assert net.nodes[2].document("d").read() == ""
    net.reconnect(2)
    net.run()
    assert net.nodes[2].document("d").read() == "while you were away"


def test_loss_is_counted_and_replaced_node_resyncs() -> None:
    net = _net(2, loss=1.0)
    net.nodes[0].document("d").insert(0, "x")
    assert net.stats.dropped >= 1
    net.loss = 0.0
    net.replace(1, Replica("fresh"))
    net.run()
    assert net.nodes[1].document("d").read() == "x"

"""The abuse benchmark's own pieces: its attack payloads must be what they claim (else it
measures refusals, not attacks), its flush measures must count right, and a quick run of two
cheap scenarios must write the fields the report reads."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from benchmarks.abuse import (
    Flush,
    delete_only_update,
    flush_summary,
    left_awareness,
    main,
    one_struct_update,
    recovery,
    tiny_structs_update,
)
from crdtdoc import Replica
from crdtdoc.protocol.awareness import decode_awareness
from crdtdoc.protocol.messages import Awareness, decode_message
from crdtdoc.updates import parse_update


def test_payloads_are_the_attacks_they_claim() -> None:
    rng = random.Random(1)
    deletes = delete_only_update(rng, 64 * 1024)
    parsed = parse_update(deletes)
    assert not parsed.structs and len(deletes) <= 64 * 1024
    assert all(client >= 2**40 for client in parsed.delete_set.clients())

    applicable, count = tiny_structs_update(4242, 0, 16 * 1024, "h")
    assert len(parse_update(applicable, details=True).items or []) == count > 1000
    r = Replica("hub")
    r.apply_update(applicable)
    assert r.version().clocks.get(4242) == count  # applied: every struct's dependency is there
    following, more = tiny_structs_update(4242, count, 16 * 1024, "h")
    r.apply_update(following)
    assert r.version().clocks.get(4242) == count + more

    waiting, _ = tiny_structs_update(777, 1, 16 * 1024, "c")  # clock 0 never comes
    lone = one_struct_update(778, 5)
    r.apply_update(waiting)
    r.apply_update(lone)
    assert 777 not in r.version().clocks and 778 not in r.version().clocks

    message = decode_message(left_awareness(rng, 1024))
    assert isinstance(message, Awareness)
    entries = decode_awareness(message.data, max_state_bytes=64)
    assert len(entries) == 1024 and all(e.removed for e in entries)


def test_flush_measures() -> None:
    ok = [Flush(i * 0.1, i * 0.1 + 0.004, "ok") for i in range(99)]
    summary = flush_summary([*ok, Flush(10.0, 12.0, "timeout")], timeout=2.0)
    assert summary["flushes"] == 100 and summary["timeouts"] == 1
    assert summary["p50_ms"] == 4.0 and summary["p99_ms"] == 2000.0
    # The attack stopped at 5 s: a slow flush ends at 6.5 s, normal ones follow.
    normal = [Flush(6.5 + i / 10, 6.503 + i / 10, "ok") for i in range(6)]
    assert recovery([Flush(4.9, 6.5, "ok"), *normal], 5.0, threshold_ms=50) == 1.5
    assert recovery(normal, 5.0, threshold_ms=50) == 1.5
    assert recovery([Flush(4.95, 5.01, "ok"), *normal], 5.0, threshold_ms=50) == 1.5
    assert recovery([Flush(4.98, 5.01, "ok"), *normal], 5.0, threshold_ms=50) == 0.0
    blip = [*normal[:5], Flush(7.0, 7.06, "ok"), *normal[5:]]  # one slow flush later on
    assert recovery([Flush(4.9, 6.5, "ok"), *blip], 5.0, threshold_ms=50) == 1.5
    assert recovery([*normal[:3], Flush(5.5, 7.5, "timeout")], 5.0, threshold_ms=50) is None


def test_a_quick_run_writes_every_field(tmp_path: Path) -> None:
    main(["--quick", "--scenarios", "f,d", "--seconds", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "abuse.json").read_text())
    assert (tmp_path / "abuse.md").is_file()
    # the plot needs the bench extra (matplotlib); the test command installs only the test one
    assert (tmp_path / "abuse.png").is_file() or importlib.util.find_spec("matplotlib") is None
    assert set(report["scenarios"]) == {"f", "d"}
    for name, result in report["scenarios"].items():
        assert result["status"] == "ran", (name, result.get("reason"))
        hub = result["hub"]
        assert hub["rss_before_mib"] > 0 and hub["rss_peak_mib"] >= hub["rss_before_mib"]
        assert hub["rss_after_mib"] > 0 and hub["growth_mib"] is not None
        honest = result["honest"]
        for phase in ("baseline", "during", "after"):
            assert honest[phase]["flushes"] > 0, (name, phase)
            assert {"p50_ms", "p99_ms", "max_ms", "timeouts"} <= set(honest[phase])
        assert "recovery_s" in honest
        assert result["attacker"]["sent"] > 0 and "closes" in result["attacker"]
        assert set(result["verdict"]) == {"flush_p99", "memory", "recovery", "met"}
    assert report["scenarios"]["d"]["attacker"]["replies"]  # the hub answered the requests
    assert "| f |" in (tmp_path / "abuse.md").read_text()

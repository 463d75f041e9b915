"""`SharedMap` (`crdtdoc.artifacts.shared_map`): JSON values per key, last writer wins, every
reader agreeing on what is there."""

from __future__ import annotations

import pytest

from crdtdoc import Replica
from crdtdoc.errors import UsageError
from tests.support.builders import sync


def test_values_read_back_as_written_ints_as_ints() -> None:
    settings = Replica("alice").map("settings")
    settings.set("retries", 3)
    settings.set("ratio", 0.5)
    settings.set("owners", ["alice", {"team": "core"}])
    settings.set("off", None)
    assert settings.get("retries") == 3 and isinstance(settings.get("retries"), int)
    assert settings.to_dict() == {
        "retries": 3,
        "ratio": 0.5,
        "owners": ["alice", {"team": "core"}],
        "off": None,
    }
    assert settings.get("missing", "default") == "default"
    assert "off" in settings and "missing" not in settings and 3 not in settings
    assert sorted(settings) == sorted(settings.keys()) == ["off", "owners", "ratio", "retries"]
    assert len(settings) == 4 and repr(settings) == "SharedMap('settings', 4 keys)"


def test_delete_says_whether_there_was_an_entry() -> None:
    settings = Replica("alice").map("settings")
    settings.set("k", 1)
    assert settings.delete("k") is True
    assert settings.delete("k") is False
    assert settings.to_dict() == {} and len(settings) == 0


def test_keys_must_be_text() -> None:
    settings = Replica("alice").map("settings")
    with pytest.raises(UsageError, match="map keys must be str, got int"):
        settings.set(1, "x")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        settings.get(None)  # type: ignore[arg-type]


def test_concurrent_writes_converge_on_one_value_and_the_kind_is_recorded() -> None:
    alice, bob = Replica("alice"), Replica("bob")
    alice.map("settings").set("mode", "fast")
    bob.map("settings").set("mode", "safe")
    bob.map("settings").set("only-bob", True)
    sync(alice, bob)
    assert alice.map("settings").to_dict() == bob.map("settings").to_dict()
    assert alice.map("settings").get("mode") in ("fast", "safe")
    assert alice.map("settings").get("only-bob") is True
    assert alice.artifacts()["settings"] == "map"

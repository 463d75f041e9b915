"""`HubConfig` (`crdtdoc.server.config`): where rooms live, and settings refused at once."""

from __future__ import annotations

import pytest

from crdtdoc.server.config import HubConfig, ws_url


def test_rooms_are_shared_only_on_postgresql() -> None:
    assert not HubConfig().shared
    assert not HubConfig(db="rooms.db").shared
    assert HubConfig(db="postgresql://u@h/db").shared
    assert HubConfig(db="postgres://u@h/db").shared


def test_redis_needs_a_shared_store() -> None:
    with pytest.raises(ValueError, match="--redis connects hubs that share a PostgreSQL"):
        HubConfig(db="rooms.db", redis="redis://127.0.0.1:6379/0")
    assert HubConfig(db="postgresql://u@h/db", redis="redis://127.0.0.1:6379/0").redis


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_rooms": 0}, "max_rooms must be at least 1"),
        ({"max_message_bytes": 0}, "max_message_bytes must be at least 1"),
        ({"max_waiting_structs": 0}, "max_waiting_structs must be at least 1"),
        ({"send_timeout": 0}, "send_timeout must be positive"),
        ({"anti_entropy_seconds": -1.0}, "anti_entropy_seconds must be positive"),
        ({"idle_timeout": -1.0}, "idle_timeout must be 0"),
        ({"fanout_drop_rate": 1.5}, "fanout_drop_rate must be between 0 and 1"),
        ({"synchronous": "off"}, "synchronous must be 'full' or 'normal'"),
    ],
)
def test_settings_out_of_range_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HubConfig(**settings)  # type: ignore[arg-type]


def test_the_edges_of_the_ranges_are_accepted() -> None:
    config = HubConfig(max_rooms=1, idle_timeout=0.0, fanout_drop_rate=1.0, synchronous="normal")
    assert (config.max_rooms, config.idle_timeout, config.fanout_drop_rate) == (1, 0.0, 1.0)


@pytest.mark.parametrize("port", [-1, 65536, 99999])
def test_a_port_outside_0_to_65535_is_a_bad_setting(port: int) -> None:
    with pytest.raises(ValueError, match="port must be from 0 to 65535"):
        HubConfig(port=port)


def test_the_hub_url_brackets_an_ipv6_host() -> None:
    assert ws_url("::1", 8765) == "ws://[::1]:8765"  # ws://::1:8765 names no port
    assert ws_url("127.0.0.1", 8765) == "ws://127.0.0.1:8765"


@pytest.mark.parametrize("store", ["mysql://x/y", "sqlite://rooms.db", "redis://127.0.0.1"])
def test_a_store_url_of_another_kind_is_a_bad_setting(store: str) -> None:
    """A URL is not a SQLite file name: it was opened as one ("unable to open database file")."""
    with pytest.raises(ValueError, match="postgresql://"):
        HubConfig(db=store)

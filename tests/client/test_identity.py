"""crdtdoc.client.identity: an agent's client id is reused across processes only when safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdtdoc.client.identity import STATE_DIR_ENV, ClientIdFile


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))


def test_a_confirmed_id_is_reused_and_an_unconfirmed_one_never() -> None:
    first = ClientIdFile("ws://h:1", "room", "alice")
    first.confirm()
    first.close()
    again = ClientIdFile("ws://h:1", "room", "alice")
    assert again.client_id == first.client_id
    again.close()  # not confirmed: something it wrote may be in flight
    after = ClientIdFile("ws://h:1", "room", "alice")
    assert after.client_id != first.client_id
    after.close()


def test_two_processes_of_one_agent_at_once_get_different_ids() -> None:
    held = ClientIdFile("ws://h:1", "room", "alice")
    held.confirm()
    other = ClientIdFile("ws://h:1", "room", "alice")  # the lock is held: a fresh id
    assert other.client_id != held.client_id
    other.confirm()
    other.close()
    held.close()


def test_ids_are_per_agent_room_and_hub() -> None:
    a = ClientIdFile("ws://h:1", "room", "alice")
    a.confirm()
    a.close()
    for hubs, room, agent in (("ws://h:2", "room", "alice"), ("ws://h:1", "r2", "alice")):
        other = ClientIdFile(hubs, room, agent)
        assert other.client_id != a.client_id
        other.close()


def test_a_damaged_state_file_means_a_fresh_id(tmp_path: Path) -> None:
    a = ClientIdFile("ws://h:1", "room", "alice")
    a.confirm()
    a.close()
    for path in tmp_path.glob("client-*.json"):
        path.write_text("{not json")
    b = ClientIdFile("ws://h:1", "room", "alice")
    assert b.client_id != a.client_id
    b.close()

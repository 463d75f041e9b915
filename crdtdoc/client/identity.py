"""One Yjs client id per agent, room and hub across short-lived processes (the command line).

Every client id a room has seen costs every version token a few characters, so an agent that
runs a command per edit with a fresh id each time makes the room's tokens grow without bound.
Reusing an id is safe only if no two processes use it at once and the previous user left
nothing in flight: two writers under one id would make two different items with the same id,
and a write sent but not yet stored would collide with the next process's first write. So:

- a process takes an exclusive lock on the agent's state file for as long as it runs (another
  process of the same agent at the same time gets a fresh id);
- the file records the id as *in use* before the id writes anything, and as *clean* only once
  the hub confirmed it stored everything (`ClientIdFile.confirm`); an id not left clean (a
  crash, a timeout, a refusal) is never used again: the next process takes a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO

from crdtdoc.replica import new_client_id

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every process takes a fresh id
    fcntl = None  # type: ignore[assignment]

STATE_DIR_ENV = "CRDTDOC_STATE_DIR"


def state_dir() -> Path:
    """Where the command line keeps its state ($CRDTDOC_STATE_DIR, else ~/.cache/crdtdoc)."""
    given = os.environ.get(STATE_DIR_ENV)
    return Path(given) if given else Path.home() / ".cache" / "crdtdoc"


class ClientIdFile:
    """The agent's client id for one room on given hubs, held (locked) while this lives."""

    def __init__(self, hubs: str, room: str, agent: str) -> None:
        self.client_id = new_client_id()
        self._file: IO[str] | None = None
        if fcntl is None:
            return
        key = hashlib.sha256(f"{hubs}\n{room}\n{agent}".encode()).hexdigest()[:32]
        try:
            directory = state_dir()
            directory.mkdir(parents=True, exist_ok=True)
            handle = open(directory / f"client-{key}.json", "a+", encoding="utf-8")  # noqa: SIM115
        except OSError:
            return  # no state to keep: a fresh id
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process of this agent holds it now
            handle.close()
            return
        self._file = handle
        handle.seek(0)
        try:
            saved = json.loads(handle.read() or "{}")
        except ValueError:
            saved = {}
        reused = saved.get("client_id") if isinstance(saved, dict) else None
        if isinstance(reused, int) and saved.get("clean") is True and 0 < reused < 2**53:
            self.client_id = reused
        self._write(clean=False)  # in use from now on, until confirmed

    def _write(self, clean: bool) -> None:
        handle = self._file
        if handle is None:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"client_id": self.client_id, "clean": clean}))
        handle.flush()
        os.fsync(handle.fileno())

    def confirm(self) -> None:
        """The hub stored everything this process wrote: the next process may reuse the id."""
        self._write(clean=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

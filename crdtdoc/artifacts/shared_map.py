"""`SharedMap`: a shared map (Yjs root Y.Map) of JSON-like values, last writer wins per key.

The building block under task lists and specs; values go in through `crdtdoc.values` and come out
through `crdtdoc.safe_read`, so ints read back as ints, and an entry that is not JSON (or that the
engine cannot read) is left out by every reader alike: `get`, `to_dict`, `keys`, `in`, `len`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pycrdt import Map

from crdtdoc import safe_read
from crdtdoc.artifacts.base import Artifact
from crdtdoc.errors import UsageError
from crdtdoc.values import JSONValue, check_text, to_yjs


class SharedMap(Artifact[Map[Any]]):
    """A shared key -> JSON value map."""

    __slots__ = ()
    artifact = "map"
    root_type = Map

    def set(self, key: str, value: JSONValue) -> None:
        _check_key(key)
        stored = to_yjs(value)
        with self._writing() as root:
            root[key] = stored

    def get(self, key: str, default: JSONValue = None) -> JSONValue:
        _check_key(key)
        value = safe_read.json_entry(self._root(), key)
        return default if value is safe_read.ABSENT else value

    def delete(self, key: str) -> bool:
        """Removes `key` (a damaged entry too, when the engine can); returns whether there was
        an entry."""
        _check_key(key)
        if not safe_read.has(self._root(), key):
            return False
        with self._writing() as root:
            del root[key]
        return True

    def to_dict(self) -> dict[str, JSONValue]:
        return safe_read.json_entries(self._root())

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return safe_read.json_entry(self._root(), key) is not safe_read.ABSENT

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"SharedMap({self._name!r}, {len(self)} keys)"


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise UsageError(f"map keys must be str, got {type(key).__name__}")
    check_text(key, "the map key")

"""`SharedMap`: a shared map (Yjs root Y.Map) of JSON-like values, last writer wins per key.

The building block under task lists and specs; values go through `crdtdoc.values`, so ints read
back as ints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pycrdt import Map

from crdtdoc.errors import CrdtdocError
from crdtdoc.values import JSONValue, from_yjs, to_yjs

if TYPE_CHECKING:
    from crdtdoc.replica import Replica


class SharedMap:
    """A shared key -> JSON value map."""

    __slots__ = ("_name", "_replica")

    def __init__(self, replica: Replica, name: str) -> None:
        self._replica = replica
        self._name = name
        replica._declare(name, "map", Map)

    @property
    def name(self) -> str:
        return self._name

    def _map(self) -> Map[JSONValue]:
        return self._replica._root(self._name, Map)

    def set(self, key: str, value: JSONValue) -> None:
        _check_key(key)
        stored = to_yjs(value)
        with self._replica.transaction():
            self._replica._record_kind(self._name)
            self._map()[key] = stored

    def get(self, key: str, default: JSONValue = None) -> JSONValue:
        _check_key(key)
        m = self._map()
        return from_yjs(m[key]) if key in m else default

    def delete(self, key: str) -> bool:
        """Removes `key`; returns whether it was there."""
        _check_key(key)
        m = self._map()
        if key not in m:
            return False
        with self._replica.transaction():
            self._replica._record_kind(self._name)
            del self._map()[key]
        return True

    def to_dict(self) -> dict[str, JSONValue]:
        return {k: from_yjs(v) for k, v in self._map().items()}

    def keys(self) -> list[str]:
        return list(self._map().keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._map()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._map())

    def __repr__(self) -> str:
        return f"SharedMap({self._name!r}, {len(self)} keys)"


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise CrdtdocError(f"map keys must be str, got {type(key).__name__}")

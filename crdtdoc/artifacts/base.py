"""`Artifact`: what every artifact shares (a name, the root it lives in, writes that record its
kind), over `ArtifactHost`, the part of a replica artifacts use. Artifacts hold no network code
and touch no replica internals: a `Replica` (or a connected one) is their host."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from pycrdt import Array, Map, Text

from crdtdoc.versions import Version

R = TypeVar("R", Text, "Map[Any]", "Array[Any]")
"""The root types an artifact lives in."""


class ArtifactHost(Protocol):
    """The replica as its artifacts see it (implemented by `crdtdoc.replica.Replica`)."""

    generation: int
    """Counts commits: an unchanged generation means an unchanged document."""

    @property
    def agent(self) -> str: ...

    @property
    def client_id(self) -> int: ...

    def agents(self) -> dict[int, str]:
        """client id -> agent name, as the room's registry records them."""

    @property
    def in_transaction(self) -> bool: ...

    def transaction(
        self,
        *,
        expect: Version | str | None = None,
        on: Iterable[object] = (),
        note: str | None = None,
    ) -> AbstractContextManager[None]: ...

    def version(self) -> Version: ...

    def declare_artifact(self, name: str, artifact: str, kind: type[Any]) -> None:
        """Checks that root `name` can be this kind of artifact, and declares its type."""

    def artifact_root(self, name: str, kind: type[R]) -> R:
        """The root type of the artifact in the current engine document."""

    def record_write(self, name: str) -> None:
        """Inside a write, before it changes anything: checks the root is still of the
        artifact's kind, and records that kind in the document when the write completes."""

    def check_artifact_root(self, name: str, build: bool = False) -> None:
        """Raises `WrongKind` if others have since used the root as another Yjs type."""


class Artifact(Generic[R]):
    """A named artifact of one kind (`artifact`: "document", "tasks", ...) over a root type."""

    __slots__ = ("_name", "_replica")
    artifact: ClassVar[str]
    root_type: ClassVar[type[Any]]

    def __init__(self, replica: ArtifactHost, name: str) -> None:
        self._replica = replica
        self._name = name
        replica.declare_artifact(name, self.artifact, self.root_type)

    @property
    def name(self) -> str:
        return self._name

    def _root(self) -> R:
        """The artifact's root type (fetched each time: a rebuild replaces the document)."""
        return cast(R, self._replica.artifact_root(self._name, self.root_type))

    @contextmanager
    def _writing(self) -> Iterator[R]:
        """A local transaction that writes the artifact (recording its kind on first write)."""
        with self._replica.transaction():
            self._replica.record_write(self._name)
            yield self._root()

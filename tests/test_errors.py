"""The error tree (`crdtdoc.errors`): every error sits in one group a caller can catch, caller
mistakes are `UsageError`s, the renamed errors keep their old names as aliases, and no module
raises the bare root (a user catching a group would miss it)."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import crdtdoc
from crdtdoc import errors

ROOT = Path(__file__).resolve().parent.parent
GROUPS = (
    errors.UsageError,
    errors.RemoteError,
    errors.Refused,
    errors.CoordinationError,
    errors.StorageError,
    errors.LinkError,
    errors.ReplicaError,
)


def _every_error() -> list[type[errors.CrdtdocError]]:
    found = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.CrdtdocError)
    }
    return sorted(found - {errors.CrdtdocError}, key=lambda kind: kind.__name__)


def test_every_error_belongs_to_exactly_one_group() -> None:
    for kind in _every_error():
        groups = [group for group in GROUPS if issubclass(kind, group)]
        assert len(groups) == 1, f"{kind.__name__} is in {groups}"


def test_every_error_is_exported_with_its_group() -> None:
    for kind in _every_error():
        assert getattr(crdtdoc, kind.__name__) is kind, kind.__name__
        assert kind.__name__ in crdtdoc.__all__


def test_old_names_are_aliases_for_one_release() -> None:
    assert crdtdoc.ConflictError is crdtdoc.ConcurrentValues
    assert crdtdoc.InvalidToken is crdtdoc.InvalidVersionToken
    assert issubclass(crdtdoc.ConcurrentValues, crdtdoc.CoordinationError)
    assert issubclass(crdtdoc.InvalidVersionToken, crdtdoc.UsageError)


def test_groups_keep_the_builtin_bases_callers_catch() -> None:
    assert issubclass(crdtdoc.InvalidValue, ValueError)
    assert issubclass(crdtdoc.InvalidIndex, IndexError)
    assert issubclass(crdtdoc.NotFound, LookupError)
    assert issubclass(crdtdoc.WrongKind, TypeError)
    assert issubclass(crdtdoc.SyncTimeout, TimeoutError)
    assert issubclass(crdtdoc.Conflict, crdtdoc.StaleRead)
    assert issubclass(crdtdoc.TooLarge, crdtdoc.Refused)
    assert issubclass(crdtdoc.HubStorageError, crdtdoc.StorageError)


def test_caller_mistakes_are_usage_errors() -> None:
    replica = crdtdoc.Replica(agent="alice")
    mistakes = [
        lambda: crdtdoc.Replica(agent=""),
        lambda: crdtdoc.Replica(agent="a", client_id=-1),
        lambda: replica.document("__crdtdoc_agents"),
        lambda: replica.document("design").insert(0, 5),  # type: ignore[arg-type]
        lambda: replica.document("design").replace("", "x"),
        lambda: replica.tasks("backlog").list(status="sleeping"),
        lambda: replica.spec("api").set("", "x"),
        lambda: replica.map("m").set(3, "x"),  # type: ignore[arg-type]
        lambda: crdtdoc.Version.from_token("not a token"),
        lambda: asyncio.run(crdtdoc.retry(lambda: asyncio.sleep(0), attempts=0)),
    ]
    for mistake in mistakes:
        with pytest.raises(crdtdoc.UsageError):
            mistake()


def test_no_module_raises_the_bare_root() -> None:
    bare = []
    for folder in ("crdtdoc", "server"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Raise)
                    and isinstance(node.exc, ast.Call)
                    and isinstance(node.exc.func, ast.Name)
                    and node.exc.func.id == "CrdtdocError"
                ):
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bare == []


def test_importing_the_errors_loads_neither_the_engine_nor_the_network() -> None:
    """The package's other names load on first use (`crdtdoc.__getattr__`): a caller that only
    catches errors, and the CLI's light commands, start fast."""
    probe = "import sys, crdtdoc.errors; print(sorted(m for m in HEAVY if m in sys.modules))"
    heavy = "HEAVY = ('pycrdt', 'websockets', 'crdtdoc.replica', 'crdtdoc.client.connection')"
    loaded = subprocess.run(
        [sys.executable, "-c", f"{heavy}\n{probe}"], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
    assert crdtdoc.Replica is crdtdoc.replica.Replica  # and the lazy names still resolve
    assert "Replica" in dir(crdtdoc)
    with pytest.raises(AttributeError):
        _ = crdtdoc.NoSuchName  # type: ignore[attr-defined]


def test_every_public_name_of_the_package_resolves() -> None:
    """`__all__`, the lazy table and the errors imported at once agree: a name listed and not
    loadable would fail only when a user first touched it."""
    for name in crdtdoc.__all__:
        assert getattr(crdtdoc, name) is not None, name

"""Which build of the hot path is in use: the compiled one (mypyc, from the same source) or the
pure-Python one. Imported first by `crdtdoc/__init__.py`, before anything imports those modules.

`pip install` on a machine with a C compiler compiles `HOT_MODULES` with mypyc (setup.py) and
records each source's hash in `_compiled.json`. Here the compiled modules are used only if every
one of them is there and was built from the source beside it: a module edited since its build (a
checkout, a developer's change) would otherwise run old code. Otherwise, or with
CRDTDOC_PURE_PYTHON=1, the `.py` files are loaded in their place, all of them (a compiled module
calls its compiled neighbours directly, so the two builds are never mixed).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

HOT_MODULES = ("encoding", "idset", "contents", "updates", "places", "itemindex", "semantics")
"""What every update goes through (the parser and what it stands on, the item index and the
semantic checks), in import order: what mypyc compiles (setup.py reads this line)."""
PURE_ENV = "CRDTDOC_PURE_PYTHON"
HERE = Path(__file__).resolve().parent


def source_hash(module: str, directory: Path = HERE) -> str:
    """The SHA-256 of a hot module's source (what a build records and this checks)."""
    return hashlib.sha256((directory / f"{module}.py").read_bytes()).hexdigest()


def built_modules(directory: Path = HERE) -> list[str]:
    """The hot modules with a compiled build beside their source."""
    return [
        module
        for module in HOT_MODULES
        if any((directory / f"{module}{suffix}").exists() for suffix in _extension_suffixes())
    ]


def compiled_is_current(built: list[str], directory: Path = HERE) -> tuple[bool, str]:
    """Whether every hot module has a compiled build made from its current source, and why not."""
    if not built:
        return False, (
            "not compiled: no build beside the source (a checkout not installed, an install "
            "without a C compiler; `pip install -e .` in a checkout builds it)"
        )
    if os.environ.get(PURE_ENV):
        return False, f"{PURE_ENV} is set"
    try:
        recorded = json.loads((directory / "_compiled.json").read_text())
    except (OSError, ValueError):
        return False, "compiled, but the record of its sources is missing"
    stale = [
        m for m in HOT_MODULES if m not in built or recorded.get(m) != source_hash(m, directory)
    ]
    if stale:
        return False, f"compiled from other sources than these ({', '.join(stale)}): reinstall"
    return True, "built with mypyc from this source"


def _extension_suffixes() -> list[str]:
    return list(importlib.machinery.EXTENSION_SUFFIXES)


def _load_pure() -> None:
    """Loads each hot module from its `.py` file, in place of a compiled build."""
    package = sys.modules["crdtdoc"]
    for module in HOT_MODULES:
        name = f"crdtdoc.{module}"
        spec = importlib.util.spec_from_file_location(name, HERE / f"{module}.py")
        if spec is None or spec.loader is None:  # pragma: no cover - the file is ours
            raise ImportError(f"cannot load {name} from source")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        setattr(package, module, loaded)


_BUILT = built_modules()
COMPILED, REASON = compiled_is_current(_BUILT)
"""Whether the compiled hot path is in use, and a sentence saying why (or why not)."""
if _BUILT and not COMPILED:  # without any build, a plain import finds the sources anyway
    _load_pure()


def describe() -> str:
    """One line for `crdtdoc --version` and bug reports: which hot path runs, and why."""
    return f"hot path: {'compiled' if COMPILED else 'pure Python'} ({REASON})"

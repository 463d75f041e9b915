"""Builds crdtdoc's hot path (the update parser and what it stands on: `crdtdoc.hotpath`) with
mypyc from the same typed source, when a C compiler is there; otherwise, or with
CRDTDOC_PURE_PYTHON=1, installs the pure-Python package. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

HERE = Path(__file__).resolve().parent


def hot_modules() -> tuple[str, ...]:
    """`crdtdoc.hotpath.HOT_MODULES`, read from its source (the package cannot be imported
    before it is built): the one list of what is compiled."""
    tree = ast.parse((HERE / "crdtdoc" / "hotpath.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HOT_MODULES":
            modules: tuple[str, ...] = ast.literal_eval(node.value)
            return modules
    raise RuntimeError("crdtdoc/hotpath.py defines no HOT_MODULES")


HOT_MODULES = hot_modules()


def compiled_modules() -> list[Any]:
    """The hot modules as mypyc extensions, with a record of the sources they came from (read
    by crdtdoc.hotpath, which uses a build only while its source is unchanged); [] when they
    cannot be built here."""
    if os.environ.get("CRDTDOC_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("crdtdoc: mypyc is missing: installing the pure-Python hot path", file=sys.stderr)
        return []
    sources = [f"crdtdoc/{module}.py" for module in HOT_MODULES]
    try:
        extensions: list[Any] = mypycify(
            ["--follow-imports=silent", "--ignore-missing-imports", *sources],
            opt_level="3",
            # The modules' shared library goes inside the package (crdtdoc/_hotpath__mypyc...),
            # not beside it as one more top-level module of site-packages.
            group_name="crdtdoc._hotpath",
        )
    except Exception as exc:  # any failure here only means "not compiled"
        print(f"crdtdoc: not compiling the hot path ({exc}): pure Python", file=sys.stderr)
        return []
    record = {
        m: hashlib.sha256((HERE / "crdtdoc" / f"{m}.py").read_bytes()).hexdigest()
        for m in HOT_MODULES
    }
    (HERE / "crdtdoc" / "_compiled.json").write_text(json.dumps(record, indent=1) + "\n")
    return extensions


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


setup(ext_modules=compiled_modules())

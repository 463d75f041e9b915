"""Artifacts agents share, each on plain Yjs types (layouts in docs/SCHEMA.md)."""

from crdtdoc.artifacts.document import Document
from crdtdoc.artifacts.shared_map import SharedMap
from crdtdoc.artifacts.spec import InterfaceSpec, SpecValue
from crdtdoc.artifacts.tasks import Note, Task, TaskList

__all__ = ["Document", "InterfaceSpec", "Note", "SharedMap", "SpecValue", "Task", "TaskList"]

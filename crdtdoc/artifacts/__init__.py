"""Typed artifacts on plain Yjs types: documents (Y.Text) and maps (Y.Map)."""

from crdtdoc.artifacts.document import Document
from crdtdoc.artifacts.shared_map import SharedMap

__all__ = ["Document", "SharedMap"]

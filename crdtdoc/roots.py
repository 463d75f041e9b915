"""The root types crdtdoc keeps for its own bookkeeping inside every document (PROTOCOL.md §6)."""

from __future__ import annotations

AGENTS_ROOT = "__crdtdoc_agents"
"""Root Y.Map: str(client id) -> agent name. Each client writes only its own key."""
DELETIONS_ROOT = "__crdtdoc_deletions"
"""Root Y.Array of encoded delete sets; the client that appended an entry made those deletions."""
ARTIFACTS_ROOT = "__crdtdoc_artifacts"
"""Root Y.Map: artifact name -> kind ("document", "tasks", "spec", "map"), written by whoever
first writes the artifact, so every reader (and the change feed) knows how to read a root."""
NOTES_ROOT = "__crdtdoc_notes"
"""Root Y.Array of {"by", "note", "at", "artifacts"}: what guarded transactions said they do."""
INTERNAL_ROOTS = frozenset({AGENTS_ROOT, DELETIONS_ROOT, ARTIFACTS_ROOT, NOTES_ROOT})
BOOKKEEPING_MAPS = frozenset({AGENTS_ROOT, ARTIFACTS_ROOT})
"""The bookkeeping roots that are Y.Maps (they hold no sequence)."""
BOOKKEEPING_ARRAYS = frozenset({DELETIONS_ROOT, NOTES_ROOT})
"""The bookkeeping roots that are Y.Arrays (of any values)."""

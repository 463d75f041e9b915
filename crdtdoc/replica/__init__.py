"""The replica: one agent's local copy of a shared room (`Replica`), built in layers, one
module each, each calling only the layers below: `state` (its fields, limits, client ids) ->
`engine` (the pycrdt document, observed, read back, rebuilt) -> `artifact_roots` (which root is
which artifact) -> `remote` (validating, buffering and applying updates from elsewhere) ->
`history_reads` (history, blame positions, reverts) -> `replica` (identity, local and guarded
writes, the deletions log, past versions, saving). `snapshots` is what the engine answers about
the past."""

from crdtdoc.replica.artifact_roots import KIND_LABELS
from crdtdoc.replica.history_reads import artifact_names
from crdtdoc.replica.replica import Replica
from crdtdoc.replica.state import Judge, Pending, ReplicaLimits, UpdateListener, new_client_id

__all__ = [
    "KIND_LABELS",
    "Judge",
    "Pending",
    "Replica",
    "ReplicaLimits",
    "UpdateListener",
    "artifact_names",
    "new_client_id",
]

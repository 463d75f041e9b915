"""An in-process network for replicas, with faults on demand (for tests and benchmarks)."""

from crdtdoc.sim.network import LinkStats, NotConverged, SimNetwork

__all__ = ["LinkStats", "NotConverged", "SimNetwork"]

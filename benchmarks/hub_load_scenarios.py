"""The hub_load scenarios and the hubs they compare, shared by the run (`benchmarks.hub_load`)
and its report (`benchmarks.hub_load_report`)."""

from __future__ import annotations

SCENARIOS = {
    "burst-10x1000": ["10", "burst", "1000"],
    "burst-50x100": ["50", "burst", "100"],
    "rate-10x5/s": ["10", "rate", "5", "20"],
    "rate-50x2/s": ["50", "rate", "2", "20"],
    "flush-50x300KB": ["50", "flush", "300", "20"],
    "reconnect-storm-50": ["50", "storm", "10", "keep"],
    "reconnect-storm-50-fresh": ["50", "storm", "10", "fresh"],
}
CORE_SCENARIOS = ["burst-10x1000", "rate-50x2/s"]  # what cluster_load reuses
HUB_ORDER = ["crdtdoc", "crdtdoc-no-history", "y-websocket", "hocuspocus", "pycrdt-websocket"]
"""`crdtdoc-no-history` (`crdtdoc serve --no-history`) runs only when asked (`--hub`): what the
hub's history costs, side by side."""
Results = dict[str, dict[str, dict[str, object]]]  # scenario -> hub -> median figures


# Hubs left out of the reconnect storms unless named with --hub, and why.
STORM_UNSUPPORTED = {
    "pycrdt-websocket": "its server process dies in the storm: a send to a closed connection "
    "raises ConnectionClosedOK in the room's task group, which closes the room's other "
    "connections (hundreds of reconnects) and ends the server",
}


def is_storm(scenario: str, args: list[str] | None = None) -> bool:
    """Whether a scenario is a reconnect storm (driver mode "storm"), reported apart."""
    return (args or SCENARIOS.get(scenario, ["", ""]))[1] == "storm"

"""`python -m benchmarks NAME [options]` (or `crdtdoc bench NAME`): runs one benchmark.

Names: strategies, partitions, hub_load, trace, cluster_load, validation_overhead, instructions,
gate_cost, abuse, history, and report (regenerates benchmarks/RESULTS.md from the recorded results).
`NAME --help` shows its options.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "strategies": "benchmarks.strategies",
    "partitions": "benchmarks.partitions",
    "hub_load": "benchmarks.hub_load",
    "trace": "benchmarks.trace",
    "cluster_load": "benchmarks.cluster_load",
    "validation_overhead": "benchmarks.validation_overhead",
    "instructions": "benchmarks.instructions",
    "gate_cost": "benchmarks.gate_cost",
    "abuse": "benchmarks.abuse",
    "history": "benchmarks.history",
    "report": "benchmarks.report",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in BENCHMARKS:
        print(__doc__.strip())
        if args and args[0] not in ("-h", "--help"):
            print(f"\nunknown benchmark {args[0]!r}")
            return 2
        return 0 if args else 2
    module = importlib.import_module(BENCHMARKS[args[0]])
    sys.argv = [f"benchmarks {args[0]}", *args[1:]]
    if args[0] == "report":
        print(f"written {module.write_results()}")
    else:
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())

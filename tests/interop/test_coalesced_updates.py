"""Stock Yjs reads a run of updates the hub merged for one connection
(`crdtdoc.protocol.coalesce`, pycrdt's merge) as crdtdoc reads the same updates one by one:
text beyond ASCII (é, emoji: clocks are UTF-16 code units), deletions, three writers who see
each other's work now and then. The seed is printed; replay with CRDTDOC_SEED=<seed>."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

from crdtdoc.protocol.coalesce import coalesce
from crdtdoc.protocol.messages import decode_message
from tests.interop.test_yjs_peer import node_peer_available
from tests.protocol.test_coalesce import _edits, _text

HERE = Path(__file__).parent


def test_yjs_reads_merged_updates_as_crdtdoc_reads_them_one_by_one() -> None:
    node_peer_available()
    seed = int(os.environ.get("CRDTDOC_SEED", random.randrange(2**32)))
    print(f"seed {seed}")
    runs = [_edits(seed + n, 40) for n in range(20)]
    merged = [coalesce(messages) for messages in runs]
    assert all(len(m) == 1 for m in merged)
    node = subprocess.run(
        ["node", str(HERE / "yjs_render.mjs")],
        input=json.dumps(
            {
                "base": "0000",  # an empty update: each case alone on a fresh Y.Doc
                "cases": [decode_message(m[0]).update.hex() for m in merged],  # type: ignore[union-attr]
                "roots": [["t", "text"]],
            }
        ),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=120,
    )
    assert node.returncode == 0, node.stderr[-2000:]
    for n, (messages, yjs) in enumerate(zip(runs, json.loads(node.stdout), strict=True)):
        assert yjs == {"t": _text(messages)}, f"seed {seed + n}: Yjs reads the merge otherwise"

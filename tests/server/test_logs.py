from __future__ import annotations

import json
import logging

from crdtdoc.server.logs import JsonFormatter


def test_records_are_one_json_object_with_their_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "crdtdoc.hub", "levelname": "WARNING", "msg": "peer %s left", "args": ("p1",)}
    )
    record.room = "design"
    record.queued = 3
    record.error = ValueError("boom")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "crdtdoc.hub"
    assert entry["msg"] == "peer p1 left"
    assert (entry["room"], entry["queued"], entry["error"]) == ("design", 3, "boom")
    assert entry["ts"].endswith("Z")

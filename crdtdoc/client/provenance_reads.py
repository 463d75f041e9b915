"""Reading the hub's provenance records of a room (`crdtdoc.provenance`), page by page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.requests import ReadProvenance
from crdtdoc.provenance import Provenance, StoredRecord, records_from_rows

Ask = Callable[[ReadProvenance], Awaitable[dict[str, Any]]]


async def read_provenance(ask: Ask) -> Provenance:
    """Every provenance row the hub stores for the room, asked for with `ask`, as one
    `Provenance`. Raises the request's typed refusal, or `InvalidMessage` for an answer that is
    not rows in order."""
    rows: list[StoredRecord] = []
    after: tuple[str, int] | None = None
    while True:
        result = await ask(ReadProvenance(after))
        page, more = result.get("rows"), result.get("more")
        if not isinstance(page, list) or not isinstance(more, bool):
            raise InvalidMessage("a provenance answer holds rows (a list) and more (a bool)")
        for value in page:
            row = StoredRecord.from_wire(value)
            if after is not None and (row.hub, row.n) <= after:
                raise InvalidMessage("the hub sent provenance rows out of order")
            after = (row.hub, row.n)
            rows.append(row)
        if not more:
            return Provenance(records_from_rows(rows))
        if not page:
            raise InvalidMessage("the hub said more provenance rows follow, and sent none")

"""`crdtdoc.client.provenance_reads`: pages are read on from the last row until the hub says
there are no more; an answer out of order, or one that promises more and sends nothing, is
refused (`InvalidMessage`) rather than read forever."""

from __future__ import annotations

from typing import Any

import pytest

from crdtdoc.client.provenance_reads import read_provenance
from crdtdoc.errors import InvalidMessage
from crdtdoc.protocol.requests import ReadProvenance
from crdtdoc.provenance import FULL, StoredRecord
from crdtdoc.updates import encode_state_vector
from tests.support.aio import run


def row(n: int, hub: str = "a") -> list[object]:
    return StoredRecord(hub, n, 5, n, n + 1, encode_state_vector({1: n}), FULL, 0.0).to_wire()


def hub_answering(*pages: dict[str, Any]) -> tuple[list[ReadProvenance], Any]:
    asked: list[ReadProvenance] = []
    answers = iter(pages)

    async def ask(request: ReadProvenance) -> dict[str, Any]:
        asked.append(request)
        return next(answers)

    return asked, ask


def test_pages_are_read_on_from_the_last_row() -> None:
    asked, ask = hub_answering(
        {"rows": [row(1), row(2)], "more": True}, {"rows": [row(1, "b")], "more": False}
    )
    provenance = run(read_provenance(ask))
    assert len(provenance) == 3
    assert [a.after for a in asked] == [None, ("a", 2)]
    record = provenance.record_of(5, 2)
    assert record is not None and record.seen == {1: 2}


@pytest.mark.parametrize(
    "pages",
    [
        [{"rows": [row(2), row(1)], "more": False}],
        [{"rows": [row(1)], "more": True}, {"rows": [row(1)], "more": False}],
        [{"rows": [row(1)], "more": True}, {"rows": [], "more": True}],
        [{"rows": "nope", "more": False}],
        [{"rows": [[1, 2]], "more": False}],
        [{"rows": [], "more": "yes"}],
    ],
)
def test_a_bad_answer_is_refused(pages: list[dict[str, Any]]) -> None:
    _, ask = hub_answering(*pages)
    with pytest.raises(InvalidMessage):
        run(read_provenance(ask))

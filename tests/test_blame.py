"""`crdtdoc.blame` (`Document.blame`): who wrote each stretch of a text, now and at any past
version, placed by the engine and checked against what the text reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtdoc import Replica
from tests.support.sessions import DOC, LETTERS, run_session

AGENT_OF = {letter: agent for agent, letter in LETTERS.items()}


def per_character(spans: list) -> list[tuple[str, str | None]]:  # type: ignore[type-arg]
    return [(ch, span.agent) for span in spans for ch in span.text]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_every_character_is_blamed_on_the_agent_who_typed_it(seed: int) -> None:
    """Each agent types only its own letter, so blame is checkable character by character."""
    print(f"seed={seed}")
    session = run_session(seed, steps=40)
    session.sync_all()
    replica = session.replicas["carol"]
    doc = replica.document(DOC)
    spans = doc.blame()
    assert "".join(s.text for s in spans) == doc.read()
    assert [s.start for s in spans] == [
        sum(len(t.text) for t in spans[:n]) for n in range(len(spans))
    ]
    for span in spans:
        assert span.end - span.start == len(span.text)
        assert {AGENT_OF[ch] for ch in span.text} == {span.agent}
        # Written by one step: all of it was there at the version after that step.
        then = replica.at(span.version).document(DOC).read()
        assert then.count(LETTERS[span.agent or ""]) >= len(span.text)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32))
def test_blame_at_a_past_version_is_what_blame_said_then(seed: int) -> None:
    print(f"seed={seed}")
    session = run_session(seed, steps=25)
    editor = session.replicas["alice"]
    editor.document(DOC).insert(0, "a")
    then = editor.version()
    said = per_character(editor.document(DOC).blame())
    for agent in ("bob", "carol", "alice"):
        session.sync(agent, "alice")
        session.replicas[agent].document(DOC).insert(0, LETTERS[agent] * 2)
    session.sync_all()
    later = session.replicas["bob"]
    assert per_character(later.document(DOC).blame(at=then)) == said


def test_blame_with_formatting_and_a_replacement() -> None:
    alice, bob = Replica("alice", history=True), Replica("bob", history=True)
    alice.document("design").insert(0, "The API returns JSON.\n")
    bob.apply_update(alice.encode_update())
    bob.document("design").replace("JSON", "XML")
    bob.document("design").insert(0, "Note: ", {"bold": True})
    alice.apply_update(bob.encode_update())
    spans = [(s.text, s.agent) for s in alice.document("design").blame()]
    assert spans == [
        ("Note: ", "bob"),
        ("The API returns ", "alice"),
        ("XML", "bob"),
        (".\n", "alice"),
    ]
    lines = [s.describe() for s in alice.document("design").blame()]
    assert lines[0] == "0-6 bob: 'Note: '"


def test_blame_of_an_empty_and_a_stock_client_text() -> None:
    from pycrdt import Doc, Text

    r = Replica("alice", history=True)
    assert r.document("empty").blame() == []
    stock = Doc(client_id=7)
    stock.get("notes", type=Text).insert(0, "from a Yjs editor")
    r.apply_update(stock.get_update())
    (span,) = r.document("notes").blame()
    assert (span.text, span.agent, span.client_id) == ("from a Yjs editor", None, 7)
    assert span.describe() == "0-17 client 7: 'from a Yjs editor'"


def test_a_version_that_splits_a_surrogate_pair_is_refused_not_a_panic() -> None:
    """Review (issue 21): a hand-made token deleting half of an emoji made the engine panic
    (a BaseException) when blame placed the text's items."""
    from crdtdoc import HistoryUnavailable, Version
    from crdtdoc.idset import IdSet

    r = Replica("alice", client_id=11, history=True)
    r.document("d").insert(0, "ab\U0001f600cd")
    r.document("d").delete(2, 1)
    half = IdSet()
    half.add(11, 3, 4)  # the low half of the deleted emoji only
    with pytest.raises(HistoryUnavailable):
        r.document("d").blame(at=Version({11: 6}, half))

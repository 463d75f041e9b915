"""Document: str indices over pycrdt's byte offsets, and whole-text writes as minimal edits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Text

import crdtdoc
from crdtdoc import CrdtdocError, InvalidIndex, Replica

chars = st.sampled_from(["a", "b", "é", "😀", "中", "👩‍💻", "\n", "ß"])
texts = st.lists(chars, max_size=15).map("".join)


@given(texts, st.data())
def test_insert_and_delete_follow_python_str_semantics(initial: str, data: st.DataObject) -> None:
    doc = Replica("a").document("d")
    doc.insert(0, initial)
    model = initial
    for _ in range(6):
        if data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(model)))
            s = data.draw(texts)
            doc.insert(i, s)
            model = model[:i] + s + model[i:]
        elif model:
            i = data.draw(st.integers(0, len(model) - 1))
            n = data.draw(st.integers(0, len(model) - i))
            doc.delete(i, n)
            model = model[:i] + model[i + n :]
        assert doc.read() == model
        assert len(doc) == len(model)


def test_emoji_and_cjk_indices() -> None:
    doc = Replica("a").document("d")
    doc.insert(0, "😀中文")
    doc.insert(1, "|")  # after the emoji, not inside it
    assert doc.read() == "😀|中文"
    doc.delete(2, 1)
    assert doc.read() == "😀|文"
    doc.append("!")
    assert str(doc) == "😀|文!"


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.insert(-1, "x"),
        lambda d: d.insert(4, "x"),
        lambda d: d.delete(0, 4),
        lambda d: d.delete(3, 1),
        lambda d: d.delete(0, -1),
        lambda d: d.insert("0", "x"),
        lambda d: d.insert(True, "x"),
    ],
)
def test_out_of_range_edits_raise_invalid_index_and_change_nothing(call: object) -> None:
    doc = Replica("a").document("d")
    doc.insert(0, "a😀b")
    with pytest.raises(InvalidIndex):
        call(doc)  # type: ignore[operator]
    assert doc.read() == "a😀b"


def test_non_str_text_is_refused() -> None:
    doc = Replica("a").document("d")
    with pytest.raises(CrdtdocError, match="takes a str"):
        doc.insert(0, 5)  # type: ignore[arg-type]
    with pytest.raises(CrdtdocError, match="takes a str"):
        doc.write(None)  # type: ignore[arg-type]


@given(texts, texts)
def test_write_reaches_the_new_text(old: str, new: str) -> None:
    doc = Replica("a").document("d")
    doc.insert(0, old)
    doc.write(new)
    assert doc.read() == new


def test_write_keeps_concurrent_edits_elsewhere() -> None:
    base = "# Design\n\nIntro paragraph.\n\nAPI section.\n"
    alice, bob = Replica("alice"), Replica("bob")
    alice.document("d").insert(0, base)
    bob.apply_update(alice.encode_update())
    # Alice rewrites the whole text, changing the intro; Bob concurrently edits the API section.
    alice.document("d").write(base.replace("Intro paragraph.", "Intro, revised."))
    bob_doc = bob.document("d")
    bob_doc.insert(bob_doc.read().index("API") + 3, " (v2)")
    alice.apply_update(bob.encode_update(alice.version()))
    bob.apply_update(alice.encode_update(bob.version()))
    expected = "# Design\n\nIntro, revised.\n\nAPI (v2) section.\n"
    assert alice.document("d").read() == bob_doc.read() == expected


def test_write_changes_only_what_changed() -> None:
    r = Replica("a")
    doc = r.document("d")
    doc.insert(0, "x" * 1000)
    before = r.version()
    doc.write("x" * 500 + "Y" + "x" * 500)
    inserted = sum(k - before.clocks.get(c, 0) for c, k in r.version().clocks.items())
    assert inserted == 1
    assert not r.version().deleted.difference(before.deleted)


def test_lines_and_replace_keep_concurrent_edits() -> None:
    a, b = Replica("alice"), Replica("bob")
    a.document("design").write("# Design\nids are UUIDs 😀\nstore: SQLite\n")
    b.apply_update(a.encode_update())
    a.document("design").replace("UUIDs", "integers")
    b.document("design").replace("SQLite", "PostgreSQL")
    a.apply_update(b.encode_update(since=a.version()))
    b.apply_update(a.encode_update(since=b.version()))
    expected = ["# Design", "ids are integers 😀", "store: PostgreSQL"]
    assert a.document("design").lines() == b.document("design").lines() == expected


def test_replace_says_clearly_when_the_text_is_absent_or_ambiguous() -> None:
    doc = Replica("a").document("d")
    doc.write("one\ntwo\none\n")
    with pytest.raises(crdtdoc.NotFound, match="'three' is not in 'd'"):
        doc.replace("three", "3")
    with pytest.raises(crdtdoc.AmbiguousText, match="lines 1 and 3"):
        doc.replace("one", "1")
    doc.replace("one\ntwo", "1\ntwo")  # more context makes it unique
    assert doc.read() == "1\ntwo\none\n"
    with pytest.raises(crdtdoc.CrdtdocError, match="non-empty"):
        doc.replace("", "x")


def _fresh(replica: Replica, name: str = "d") -> str:
    """The text read straight from the pycrdt document, bypassing what `read()` keeps."""
    return str(replica._doc.get(name, type=Text))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "remote", "txn", "listener"]),
            st.integers(0, 50),
            st.sampled_from(["a", "é", "😀", "xyz\n"]),
        ),
        max_size=40,
    )
)
def test_the_text_kept_between_edits_always_equals_the_document(
    steps: list[tuple[str, int, str]],
) -> None:
    """`read()` keeps the text between edits; whatever happens (remote updates, transactions,
    a listener editing in the middle of an edit), it must equal a fresh read of the document."""
    alice, bob = Replica("alice"), Replica("bob")
    doc = alice.document("d")
    for kind, number, text in steps:
        current = doc.read()
        if kind == "insert":
            doc.insert(number % (len(current) + 1), text)
        elif kind == "delete" and current:
            doc.delete(number % len(current), 1)
        elif kind == "remote":
            bob.apply_update(alice.encode_update())
            bob.document("d").insert(0, text)
            alice.apply_update(bob.encode_update())
        elif kind == "txn":
            with alice.transaction():
                doc.insert(0, text)
                assert doc.read() == _fresh(alice)
                doc.insert(len(doc.read()), text)
        elif kind == "listener":
            once = [True]

            def edit_again(update: bytes, local: bool, once: list[bool] = once) -> None:
                if once[0] and local:
                    once[0] = False
                    alice.document("d").insert(0, "L")

            stop = alice.on_update(edit_again)
            doc.insert(0, text)
            stop()
        assert doc.read() == _fresh(alice)

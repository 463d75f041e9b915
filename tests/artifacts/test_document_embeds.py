"""Document over texts that hold embeds, embedded types and formats, as Quill and other Yjs
editors write them: each embed is one position, shown as U+FFFC; formats take none; every edit
lands where it was aimed, everyone reads the same, and the replica stays encodable."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdtdoc import EMBED, CrdtdocError, InvalidValue, Replica, StaleRead, WrongKind
from crdtdoc.updates import parse_update
from tests.support.yjs_items import content, item, update

IMAGE = {"image": "a.png"}


def editor_text(build: Any) -> bytes:
    """An update from another client (standing in for an editor) that builds root "design"."""
    doc: Doc = Doc()
    text = doc.get("design", type=Text)
    build(text)
    return doc.get_update()


def agent_with(update: bytes) -> tuple[Replica, list[bytes]]:
    """alice holding `update`, and the list her local updates go to."""
    alice = Replica(agent="alice")
    alice.apply_update(update)
    sent: list[bytes] = []
    alice.on_update(lambda u, local: sent.append(u) if local else None)
    return alice, sent


def everyone_reads(alice: Replica, base: bytes, sent: list[bytes]) -> str:
    """What a peer that got alice's updates reads, checked against alice's own view, her
    encoded state and a replica rebuilt from it."""
    bob = Replica(agent="bob")
    bob.apply_update(base)
    for local in sent:
        bob.apply_update(local)
    text = bob.document("design").read()
    assert alice.document("design").read() == text
    state = alice.encode_update()
    parse_update(state)
    fresh = Replica(agent="carol")
    fresh.apply_update(state)
    assert fresh.document("design").read() == text
    assert fresh.document("design").delta() == alice.document("design").delta()
    return text


def hello_image() -> bytes:
    def build(t: Text) -> None:
        t.insert(0, "Hello world\n")
        t.insert_embed(5, IMAGE)

    return editor_text(build)


def test_an_embed_reads_as_one_u_fffc_and_the_delta_shows_it() -> None:
    alice, _ = agent_with(hello_image())
    doc = alice.document("design")
    assert doc.read() == f"Hello{EMBED} world\n"
    assert len(doc) == 13
    assert doc.delta() == [{"insert": "Hello"}, {"insert": IMAGE}, {"insert": " world\n"}]


def test_an_insert_after_an_image_lands_after_it_for_everyone() -> None:
    base = hello_image()
    alice, sent = agent_with(base)
    alice.document("design").insert(6, "X")
    assert everyone_reads(alice, base, sent) == f"Hello{EMBED}X world\n"


def test_multibyte_text_after_an_embed_keeps_the_replica_encodable(tmp_path: Path) -> None:
    def build(t: Text) -> None:
        t.insert(0, "éé\n")
        t.insert_embed(0, IMAGE)

    base = editor_text(build)
    alice, sent = agent_with(base)
    start = alice.version()
    alice.document("design").insert(1, "X")
    assert everyone_reads(alice, base, sent) == f"{EMBED}Xéé\n"
    assert len(alice.changes_since(start)) == 1
    with alice.transaction(expect=start, on=["design"]):
        pass
    alice.save(tmp_path / "alice.replica")
    assert Replica.load(tmp_path / "alice.replica").document("design").read() == f"{EMBED}Xéé\n"


def formatted_with_image() -> bytes:
    def build(t: Text) -> None:
        t.insert(0, "Intro BODY text end")
        t.format(6, 10, {"bold": True})
        t.insert_embed(11, IMAGE)  # between "BODY " and "text"

    return editor_text(build)


def test_write_keeps_embeds_and_formats_outside_the_changed_span() -> None:
    base = formatted_with_image()
    alice, sent = agent_with(base)
    doc = alice.document("design")
    assert doc.read() == f"Intro BODY {EMBED}text end"
    doc.write(f"Intro BODY {EMBED}texts end!")
    assert everyone_reads(alice, base, sent) == f"Intro BODY {EMBED}texts end!"
    assert doc.delta() == [
        {"insert": "Intro "},
        {"insert": "BODY", "attributes": {"bold": True}},
        {"insert": " "},
        {"insert": IMAGE},
        {"insert": "texts end!"},
    ]


def test_write_without_a_placeholder_deletes_that_embed_only() -> None:
    base = formatted_with_image()
    alice, sent = agent_with(base)
    alice.document("design").write("Intro BODY text end")
    assert everyone_reads(alice, base, sent) == "Intro BODY text end"
    assert {"insert": "BODY", "attributes": {"bold": True}} in alice.document("design").delta()


def test_replace_next_to_an_embed_replaces_the_word() -> None:
    def build(t: Text) -> None:
        t.insert(0, "Owner: bob\n")
        t.insert_embed(0, IMAGE)

    base = editor_text(build)
    alice, sent = agent_with(base)
    alice.document("design").replace("bob", "carol")
    assert everyone_reads(alice, base, sent) == f"{EMBED}Owner: carol\n"
    alice.document("design").replace(f"{EMBED}Owner", f"{EMBED}Lead")  # the embed stays
    assert everyone_reads(alice, base, sent) == f"{EMBED}Lead: carol\n"
    assert alice.document("design").delta()[0] == {"insert": IMAGE}


def test_delete_removes_an_embed_only_when_its_span_covers_it() -> None:
    base = hello_image()
    alice, sent = agent_with(base)
    doc = alice.document("design")
    doc.delete(6, 6)  # " world" after the image
    assert everyone_reads(alice, base, sent) == f"Hello{EMBED}\n"
    doc.delete(4, 2)  # "o" and the image
    assert everyone_reads(alice, base, sent) == "Hell\n"
    assert doc.delta() == [{"insert": "Hell\n"}]


def test_an_embedded_type_takes_one_position_and_reads_as_json() -> None:
    def build(t: Text) -> None:
        t.insert(0, "ab")
        t.insert_embed(1, Map({"kind": "table", "rows": 2}))

    base = editor_text(build)
    alice, sent = agent_with(base)
    doc = alice.document("design")
    assert doc.read() == f"a{EMBED}b"
    assert doc.delta()[1] == {"insert": {"kind": "table", "rows": 2}}
    doc.insert(2, "😀")
    assert everyone_reads(alice, base, sent) == f"a{EMBED}😀b"


def test_formats_take_no_position_and_inserts_inherit_them_as_in_yjs() -> None:
    def build(t: Text) -> None:
        t.insert(0, "plain bold plain")
        t.format(6, 10, {"bold": True})

    base = editor_text(build)
    alice, sent = agent_with(base)
    doc = alice.document("design")
    assert doc.read() == "plain bold plain"
    doc.insert(10, "er")  # at the end of the bold word: Yjs makes it bold too
    assert everyone_reads(alice, base, sent) == "plain bolder plain"
    assert doc.delta()[1] == {"insert": "bolder", "attributes": {"bold": True}}


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.insert(0, f"see {EMBED}"),
        lambda d: d.write(f"Hello{EMBED} world{EMBED}\n"),  # a second one
        lambda d: d.replace("world", f"world {EMBED}"),
    ],
    ids=["insert", "write adding one", "replace adding one"],
)
def test_text_cannot_create_an_embed_and_nothing_changes(edit: Any) -> None:
    base = hello_image()
    alice, sent = agent_with(base)
    with pytest.raises(InvalidValue, match="U\\+FFFC"):
        edit(alice.document("design"))
    assert sent == []
    assert alice.document("design").read() == f"Hello{EMBED} world\n"


def test_write_moving_an_embed_is_refused_and_nothing_changes() -> None:
    base = hello_image()
    alice, sent = agent_with(base)
    with pytest.raises(InvalidValue, match="moves or adds an embed"):
        alice.document("design").write(f"{EMBED}Hello world\n")
    assert sent == []
    assert alice.document("design").read() == f"Hello{EMBED} world\n"


chunks = st.sampled_from(["a", "bc", "é", "😀", "中文", "\n", "👍🏽"])


@st.composite
def editor_texts(draw: st.DrawFn) -> bytes:
    """Texts built by another client from strings, embeds and formats, in any order."""
    doc: Doc = Doc()
    text = doc.get("design", type=Text)
    units: list[int] = []  # the engine length of each position: UTF-8 bytes, 1 per embed
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(units)))
        offset = sum(units[:at])
        kind = draw(st.sampled_from(["text", "text", "embed", "format"]))
        if kind == "text":
            chunk = draw(chunks)
            text.insert(offset, chunk)
            units[at:at] = [len(c.encode()) for c in chunk]
        elif kind == "embed":
            text.insert_embed(offset, IMAGE)
            units[at:at] = [1]
        elif units:
            end = draw(st.integers(at, len(units)))
            text.format(offset, sum(units[:end]), {"bold": True})
    return doc.get_update()


@settings(max_examples=60, deadline=None)
@given(editor_texts(), st.data())
def test_random_edits_on_editor_texts_read_the_same_everywhere(
    base: bytes, data: st.DataObject
) -> None:
    alice, sent = agent_with(base)
    doc = alice.document("design")
    model = doc.read()
    embeds = model.count(EMBED)
    for _ in range(4):
        choice = data.draw(st.sampled_from(["insert", "delete", "write"]))
        if choice == "insert":
            i = data.draw(st.integers(0, len(model)))
            s = data.draw(chunks)
            doc.insert(i, s)
            model = model[:i] + s + model[i:]
        elif choice == "delete":
            i = data.draw(st.integers(0, len(model)))
            n = data.draw(st.integers(0, len(model) - i))
            embeds -= model[i : i + n].count(EMBED)
            doc.delete(i, n)
            model = model[:i] + model[i + n :]
        else:
            parts = model.split(EMBED)
            new = EMBED.join(p.upper() + data.draw(st.sampled_from(["", "é", "x"])) for p in parts)
            doc.write(new)
            model = new
        assert doc.read() == model
        assert sum(1 for op in doc.delta() if not isinstance(op["insert"], str)) == embeds
        assert everyone_reads(alice, base, sent) == model


def test_deleting_next_to_an_embedded_type_keeps_its_formatting() -> None:
    """yrs drops the format items around an embedded type when deleting beside it (Yjs keeps
    them); the edit puts the type's formatting back in the same transaction."""

    def build(t: Text) -> None:
        t.insert(0, "abc", {"bold": True})
        t.insert_embed(2, Map({"k": "v"}), {"bold": None})

    base = editor_text(build)
    alice, sent = agent_with(base)
    doc = alice.document("design")
    doc.delete(1, 1)
    assert everyone_reads(alice, base, sent) == f"a{EMBED}c"
    assert doc.delta() == [
        {"insert": "a", "attributes": {"bold": True}},
        {"insert": {"k": "v"}},
        {"insert": "c", "attributes": {"bold": True}},
    ]


def test_insert_with_attributes_formats_the_text_as_given() -> None:
    def build(t: Text) -> None:
        t.insert(0, "bold plain")
        t.format(0, 4, {"bold": True})

    base = editor_text(build)
    alice, sent = agent_with(base)
    doc = alice.document("design")
    doc.insert(4, "!", {})  # after the bold word, yet not bold
    doc.insert(0, ">", {"italic": True})
    assert everyone_reads(alice, base, sent) == ">bold! plain"
    assert doc.delta() == [
        {"insert": ">", "attributes": {"italic": True}},
        {"insert": "bold", "attributes": {"bold": True}},
        {"insert": "! plain"},
    ]
    with pytest.raises(InvalidValue, match="attributes"):
        doc.insert(0, "x", {1: True})  # type: ignore[dict-item]
    with pytest.raises(InvalidValue):
        doc.insert(0, "x", {"size": float("nan")})
    assert doc.read() == ">bold! plain"


def test_delta_of_a_root_taken_by_another_type_raises() -> None:
    replica = Replica("agent")
    doc = replica.document("d")
    stock: Doc = Doc()
    stock.get("d", type=XmlFragment).children.append(XmlElement("p", {}, [XmlText("hi")]))
    replica.apply_update(stock.get_update(), trusted=True)
    with pytest.raises(WrongKind):
        doc.delta()


def test_write_from_what_was_read_keeps_what_others_changed_since() -> None:
    base = formatted_with_image()
    alice, sent = agent_with(base)
    doc = alice.document("design")
    seen = doc.read()  # the agent reads, then thinks for a while
    doc.insert(0, "HUMAN: ")  # someone types meanwhile (here, on the same replica)
    doc.write(seen.replace("end", "END"), base=seen)
    assert everyone_reads(alice, base, sent) == f"HUMAN: Intro BODY {EMBED}text END"
    # Without the base, the write makes the text read exactly what was given.
    doc.write(seen)
    assert doc.read() == seen
    # A change to the place others changed since: refused, nothing changed.
    seen = doc.read()
    doc.replace("Intro", "Preface")
    with pytest.raises(StaleRead, match="read it again"):
        doc.write(seen.replace("Intro", "Overview"), base=seen)
    assert doc.read() == seen.replace("Intro", "Preface")


def test_a_stored_string_embed_reads_but_refuses_edits() -> None:
    """A string as an embed is refused by the parser, but a room stored before may hold one:
    yrs reads it as characters that take one position, so no index can be trusted; edits are
    refused rather than landing elsewhere or making the replica unencodable."""
    ref, body, _ = content("embed", "xx")
    stored = update(4242, 0, [item(ref, body, root="design")])
    alice = Replica(agent="alice")
    alice.apply_update(stored, trusted=True)  # as a hub loads its store
    alice.apply_update(update(4242, 1, [item(*content("string", "éé")[:2], origin=(4242, 0))]))
    doc = alice.document("design")
    assert "éé" in doc.read()
    with pytest.raises(CrdtdocError, match="edits are refused"):
        doc.insert(len(doc.read()) - 1, "X")
    parse_update(alice.encode_update())


def test_a_based_write_deleting_an_embed_after_others_added_one_is_refused() -> None:
    base = hello_image()
    alice, sent = agent_with(base)
    doc = alice.document("design")
    seen = doc.read()  # 'Hello￼ world\n'
    sent.clear()
    other: Doc = Doc()
    other.apply_update(alice.encode_update())
    other.get("design", type=Text).insert_embed(5, {"image": "b.png"})  # just before alice's
    alice.apply_update(other.get_update(), trusted=True)
    with pytest.raises(StaleRead, match="embed"):
        doc.write(seen.replace(EMBED, ""), base=seen)  # which image? cannot be told
    assert sum(1 for op in doc.delta() if not isinstance(op["insert"], str)) == 2
    assert sent == []


def test_the_delta_joins_runs_a_format_that_changes_nothing_splits() -> None:
    """A Yjs-made text whose deleted format item splits pycrdt's runs: Yjs's toDelta shows one
    run, and so does delta() (the differential test's CI seed 2678350158)."""

    base = base64.b64decode("AQTpBwAEAQF0AWFB6QcAAUHpBwEBxukHAekHAARib2xkBG51bGwB6QcBAQI=")
    alice = Replica(agent="alice")
    alice.apply_update(base)
    doc = alice.document("t")
    doc.insert(0, "a")
    assert doc.delta() == [{"insert": "aa"}]

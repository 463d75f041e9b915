"""crdtdoc.textmodel: code point indices to engine offsets with embeds, and edit plans that keep
embeds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import InvalidValue, StaleRead, textdiff
from crdtdoc.textmodel import EMBED, TextView, check_insertable, moved, plan, rebase

pieces = st.sampled_from(["a", "é", "😀", "中", "\n", EMBED, EMBED, "ab"])


def view_of(parts: list[str]) -> TextView:
    """A view whose every U+FFFC is an embed."""
    text = "".join(parts)
    return TextView(text, tuple(i for i, c in enumerate(text) if c == EMBED))


def engine_offset(text: str, embeds: tuple[int, ...], index: int) -> int:
    """The offset pycrdt uses, counted the slow way: UTF-8 bytes, one unit per embed."""
    return sum(1 if i in embeds else len(c.encode()) for i, c in enumerate(text[:index]))


@given(st.lists(pieces, max_size=12), st.data())
def test_offsets_count_utf8_bytes_and_one_unit_per_embed(
    parts: list[str], data: st.DataObject
) -> None:
    view = view_of(parts)
    index = data.draw(st.integers(0, len(view.text)))
    assert view.offset(index) == engine_offset(view.text, view.embeds, index)


def test_a_u_fffc_character_that_is_not_an_embed_takes_its_three_bytes() -> None:
    view = TextView(f"a{EMBED}b{EMBED}c", embeds=(3,))  # the first is a character
    assert [view.offset(i) for i in range(6)] == [0, 1, 4, 5, 6, 7]


@given(st.lists(pieces, max_size=10), st.data())
def test_inserted_and_deleted_views_match_the_text_they_describe(
    parts: list[str], data: st.DataObject
) -> None:
    view = view_of(parts)
    size = len(view.text)
    i = data.draw(st.integers(0, size))
    after = view.inserted(i, "xé")
    assert after == view_of([view.text[:i], "xé", view.text[i:]])
    n = data.draw(st.integers(0, size - i))
    assert view.deleted(i, n) == view_of([view.text[:i], view.text[i + n :]])


@given(st.lists(pieces, max_size=10), st.lists(pieces, max_size=10))
def test_a_plan_turns_old_into_new_or_refuses_to_create_an_embed(
    old_parts: list[str], new_parts: list[str]
) -> None:
    old, new = "".join(old_parts), "".join(new_parts)
    try:
        edits = plan(old, new, "the new text")
    except InvalidValue:  # only when the readable diff of the whole would move an embed
        assert any(EMBED in e.insert for e in textdiff.readable(old, new, EMBED))
        return
    assert textdiff.apply(old, edits) == new
    assert all(EMBED not in e.insert for e in edits)


@given(st.lists(pieces, max_size=10), st.data())
def test_a_plan_keeps_every_embed_when_the_new_text_keeps_their_number(
    parts: list[str], data: st.DataObject
) -> None:
    old = "".join(parts)
    stretches = old.split(EMBED)
    changed = [data.draw(st.sampled_from([s, s + "x", s[1:], "é" + s])) for s in stretches]
    new = EMBED.join(changed)
    edits = plan(old, new, "the new text")
    assert textdiff.apply(old, edits) == new
    for e in edits:  # no deleted span covers an embed
        assert EMBED not in old[e.index : e.index + e.delete]


def test_a_plan_deletes_the_embed_the_new_text_dropped() -> None:
    old = f"a{EMBED}b{EMBED}c"
    assert textdiff.apply(old, plan(old, f"a{EMBED}bc", "x")) == f"a{EMBED}bc"
    # As many U+FFFC as embeds: the embeds stay, the text moves around them.
    moved = plan(old, f"{EMBED}ab{EMBED}c", "the new text")
    assert textdiff.apply(old, moved) == f"{EMBED}ab{EMBED}c"
    assert all(EMBED not in old[e.index : e.index + e.delete] for e in moved)
    with pytest.raises(InvalidValue, match="U\\+FFFC"):
        plan(old, f"a{EMBED}b{EMBED}c{EMBED}", "the new text")  # one more: refused


def test_span_is_the_stretch_between_common_prefix_and_suffix() -> None:
    assert textdiff.span("bob", "carol") == [textdiff.Edit(0, 3, "carol")]
    assert textdiff.span("the bob", "the rob") == [textdiff.Edit(4, 1, "r")]
    assert textdiff.span("same", "same") == []


def test_text_holding_u_fffc_is_not_insertable() -> None:
    with pytest.raises(InvalidValue, match="embed"):
        check_insertable(f"see {EMBED}", "the inserted text")
    check_insertable("plain é 😀", "the inserted text")


@given(st.lists(pieces, max_size=10), st.data())
def test_moved_follows_each_embed_through_a_plan(parts: list[str], data: st.DataObject) -> None:
    old = "".join(parts)
    stretches = old.split(EMBED)
    new = EMBED.join(data.draw(st.sampled_from([s, s + "x\n", s[1:], "é"])) for s in stretches)
    try:
        edits = plan(old, new, "x")
    except InvalidValue as refused:  # by design when moving an embed costs fewer edits than
        assert "moves or adds an embed" in str(refused)  # keeping it (see `plan`): no plan
        return
    where = moved({i: n for n, i in enumerate(i for i, c in enumerate(old) if c == EMBED)}, edits)
    after = textdiff.apply(old, edits)
    assert sorted(where) == [i for i, c in enumerate(after) if c == EMBED]
    assert [where[i] for i in sorted(where)] == sorted(where.values())  # order kept


def test_a_write_that_moves_an_embed_past_text_is_refused() -> None:
    old = f"Title\nPara\n{EMBED}Caption"
    with pytest.raises(InvalidValue, match="moves or adds an embed"):
        plan(old, f"{EMBED}Title\nPara\nCaption", "the new text")
    # As cheap to keep the embed and move a letter: the embed stays.
    assert plan(f"ab{EMBED}", f"a{EMBED}b", "x") == [
        textdiff.Edit(1, 1, ""),
        textdiff.Edit(3, 0, "b"),
    ]


@given(st.data())
def test_rebase_keeps_both_sides_changes_when_they_are_apart(data: st.DataObject) -> None:
    """Mine rewrites one part of the text, theirs another (alphabets apart, so each diff is
    what was meant): both survive, or the two touch where the parts meet and StaleRead says so."""
    base = data.draw(st.text("abcdefgh", max_size=8).map(lambda t: "".join(dict.fromkeys(t))))
    cut = data.draw(st.integers(0, len(base)))
    left, right = base[:cut], base[cut:]
    new_left = data.draw(st.text("0123😀", max_size=4))
    new_right = data.draw(st.text("é\n ", max_size=4))
    mine_first = data.draw(st.booleans())
    mine_text = new_left + right if mine_first else left + new_right
    theirs_text = left + new_right if mine_first else new_left + right
    try:
        edits = rebase(textdiff.diff(base, mine_text), textdiff.diff(base, theirs_text))
    except StaleRead:
        assert not left or not right or not new_left or not new_right  # they meet
        return
    if not base:  # both insert at one place: theirs first
        mine_new, theirs_new = (new_left, new_right) if mine_first else (new_right, new_left)
        assert textdiff.apply(theirs_text, edits) == theirs_new + mine_new
    else:
        assert textdiff.apply(theirs_text, edits) == new_left + new_right


def test_rebase_refuses_edits_that_touch_theirs() -> None:
    base = "one two three"
    theirs = textdiff.diff(base, "one 2 three")
    with pytest.raises(StaleRead, match="position 4"):
        rebase(textdiff.diff(base, "one TWO three"), theirs)
    with pytest.raises(StaleRead):  # inserting inside what they deleted
        rebase([textdiff.Edit(5, 0, "x")], theirs)
    # Inserting where they inserted: theirs first, then mine.
    assert rebase([textdiff.Edit(3, 0, "!")], [textdiff.Edit(3, 0, "?")]) == [
        textdiff.Edit(4, 0, "!")
    ]


def test_rebase_with_a_base_refuses_edits_within_one_word_of_theirs() -> None:
    """Merged letter by letter, two edits of one word made a word neither agent wrote: "UUIDs"
    edited to "ULIDs" and to "UUIDv7s" read "ULIDv7s", with no error."""
    for base, mine_text, theirs_text in (
        ("ids are UUIDs\n", "ids are UUIDv7s\n", "ids are ULIDs\n"),
        ("line A\n", "line AA\n", "line Z\n"),
        ("a word", "a wordy", "a Word"),
    ):
        with pytest.raises(StaleRead, match="word"):
            rebase(textdiff.diff(base, mine_text), textdiff.diff(base, theirs_text), base)
    # Other words of the same line, and two additions at one place, are both kept.
    base = "one two three\n"
    theirs_text = "one 2 three\n"
    edits = rebase(textdiff.diff(base, "one two THREE\n"), textdiff.diff(base, theirs_text), base)
    assert textdiff.apply(theirs_text, edits) == "one 2 THREE\n"
    base = "log\n"
    theirs_text = "log\nbob\n"
    edits = rebase(textdiff.diff(base, "log\nalice\n"), textdiff.diff(base, theirs_text), base)
    assert textdiff.apply(theirs_text, edits) == "log\nbob\nalice\n"

"""The semantic gate's `surrogate pair` rule: no update may split a UTF-16 surrogate pair of a
string that is text in the document (or in the update itself).

Yjs counts text in UTF-16 code units, so a stock client can delete or insert between the two
halves of a character beyond U+FFFF; Yjs then replaces both halves by U+FFFD, while yrs (UTF-8
inside) deletes another character and can encode a zero-length struct nobody can read back. Every
replica refuses such an update before applying any of it. A pair already deleted is no longer
text in either engine (both keep only its length), so splitting it is harmless and accepted.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from crdtdoc import InvalidUpdate, Replica
from crdtdoc.slicing import slice_update
from crdtdoc.updates import parse_update
from tests.support.yjs_items import content, item, update

W = 7  # the writer of the text
# What stock Yjs 13.6.33 sends for `t.insert(0, 'a😀b')` and then `t.delete(2, 1)` (client 7):
YJS_INSERT = bytes.fromhex("01010700040101740661f09f98806200")
YJS_DELETE_LOW_HALF = bytes.fromhex("000107010201")


def text(chunks: list[str], client: int = W, clock: int = 0, root: str = "t") -> bytes:
    """One update writing `chunks` as consecutive string items of root text `root`."""
    structs: list[bytes] = []
    at = clock
    for chunk in chunks:
        ref, body, length = content("string", chunk)
        if structs:
            structs.append(item(ref, body, origin=(client, at - 1)))
        else:
            structs.append(item(ref, body, root=root))
        at += length
    return update(client, clock, structs)


def insert(client: int, value: str = "X", **where: Any) -> bytes:
    ref, body, _ = content("string", value)
    return update(client, 0, [item(ref, body, **where)])


def deletes(*ranges: tuple[int, int]) -> bytes:
    """An update of deletions only: `(clock, length)` ranges of the writer's ids, as written."""
    return update(0, 0, [], deletes=[(W, start, length) for start, length in ranges])


def _units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def read(replica: Replica) -> str:
    """The text as a fresh engine reads the replica's whole state (which must parse, and
    apply to a fresh replica through the gate)."""
    state = replica.encode_update()
    parse_update(state)
    Replica("joiner").apply_update(state)
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return str(doc.get("t", type=Text))


def replica_with(*updates: bytes) -> Replica:
    replica = Replica("judge", client_id=5)
    for data in updates:
        replica.apply_update(data)
    return replica


def refused(replica: Replica, data: bytes, match: str = "surrogate pair") -> None:
    """`data` is refused by the rule, and the replica is left as it was."""
    before = (replica.version(), replica.encode_update())
    with pytest.raises(InvalidUpdate, match=f"semantic rule '{match}'"):
        replica.apply_update(data)
    assert (replica.version(), replica.encode_update()) == before


def test_stock_yjs_deleting_the_low_half_is_refused() -> None:
    replica = replica_with(YJS_INSERT)
    with pytest.raises(InvalidUpdate, match=r"surrogate pair.*7:1"):
        replica.apply_update(YJS_DELETE_LOW_HALF)
    assert read(replica) == replica.document("t").read() == "a😀b"
    refused(replica, YJS_DELETE_LOW_HALF)


@pytest.mark.parametrize(
    "ranges",
    [
        [(1, 1)],  # the high half
        [(2, 1)],  # the low half
        [(0, 2)],  # 'a' and the high half: ends inside the pair
        [(2, 2)],  # the low half and 'b': starts inside the pair
        [(0, 1), (2, 2)],  # around the high half
        [(1, 1), (1, 2)],  # the pair, but its first range cuts it (yrs applies ranges one by one)
        [(2, 0)],  # nothing, but Yjs cuts the pair there (and replaces its halves)
    ],
    ids=[
        "high half",
        "low half",
        "ends mid-pair",
        "starts mid-pair",
        "all but the high half",
        "overlapping ranges",
        "empty range",
    ],
)
def test_a_deletion_splitting_a_pair_is_refused(ranges: list[tuple[int, int]]) -> None:
    replica = replica_with(text(["a😀b"]))
    refused(replica, deletes(*ranges))
    assert read(replica) == "a😀b"


@pytest.mark.parametrize(
    ("ranges", "left"),
    [([(1, 2)], "ab"), ([(0, 4)], ""), ([(0, 3)], "b"), ([(1, 3)], "a"), ([(0, 1), (3, 1)], "😀")],
)
def test_deleting_whole_pairs_is_accepted(ranges: list[tuple[int, int]], left: str) -> None:
    replica = replica_with(text(["a😀b"]), deletes(*ranges))
    assert read(replica) == left


@pytest.mark.parametrize(
    "where",
    [
        {"origin": (W, 1)},  # after the high half
        {"origin": (W, 1), "right": (W, 2)},  # between the halves, both named
        {"right": (W, 2)},  # before the low half
        {"origin": (W, 0), "right": (W, 2)},  # before the low half, from before the pair
    ],
    ids=["origin high half", "both halves", "right origin low half", "right origin only low"],
)
def test_an_insert_between_the_halves_is_refused(where: dict[str, Any]) -> None:
    replica = replica_with(text(["a😀b"]))
    for kind in ("string", "embed", "format", "deleted"):  # any item splits the string
        ref, body, _ = content(kind)
        refused(replica, update(20, 0, [item(ref, body, **where)]))
    assert read(replica) == "a😀b"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"origin": (W, 0), "right": (W, 1)}, "aX😀b"),
        ({"origin": (W, 2), "right": (W, 3)}, "a😀Xb"),
        ({"origin": (W, 2)}, "a😀bX"),  # no right origin: after what follows it (YATA)
        ({"right": (W, 1)}, "aX😀b"),
    ],
)
def test_an_insert_next_to_a_pair_is_accepted(where: dict[str, Any], expected: str) -> None:
    assert read(replica_with(text(["a😀b"]), insert(20, **where))) == expected


def test_a_split_within_one_update_is_refused() -> None:
    """The pair and its split in one update: structs are integrated before deletions."""
    replica = replica_with(text(["start"], client=3, root="other"))
    string = content("string", "a😀b")
    inside = content("string", "X")
    both = update(W, 0, [item(*string[:2], root="t"), item(*inside[:2], origin=(W, 1))])
    refused(replica, both)
    split = update(W, 0, [item(*string[:2], root="t")], deletes=[(W, 2, 1)])
    refused(replica, split)
    whole = update(W, 0, [item(*string[:2], root="t")], deletes=[(W, 1, 2)])
    replica.apply_update(whole)
    assert read(replica) == "ab"


def test_an_item_anchored_on_a_pair_split_in_two_items_is_judged() -> None:
    """The pair's string may come in several items (an editor types one character at a time)."""
    replica = replica_with(text(["a", "😀", "b"]))
    refused(replica, insert(20, origin=(W, 1)))
    refused(replica, deletes((2, 1)))
    assert read(replica) == "a😀b"


def test_a_struct_whose_new_part_starts_mid_pair_is_refused() -> None:
    """Ids a document has are skipped: the part of the struct integrated then starts at the
    document's clock, here inside the struct's own pair."""
    replica = replica_with(text(["a"]))
    refused(replica, text(["😀b"]))
    replica.apply_update(text(["ab😀"]))  # the new part starts at 'b': whole characters
    assert read(replica) == "ab😀"


def test_a_deleted_pair_is_no_longer_text() -> None:
    """Once a pair is deleted both engines keep only its length: anchoring on it or deleting
    across it is accepted, by a replica that saw the pair and by one that joined after."""
    saw = replica_with(text(["a😀b"]), deletes((1, 2)))
    joined = replica_with(saw.encode_update())
    for replica in (saw, joined):
        replica.apply_update(insert(20, origin=(W, 1), right=(W, 2)))
        replica.apply_update(deletes((2, 2)))
        assert read(replica) == "aX"


def test_a_held_deletion_is_judged_when_its_ids_arrive() -> None:
    replica = replica_with(text(["start"], client=3))
    replica.apply_update(deletes((2, 1)), origin="peer")  # waits for the pair
    assert replica.pending().deletions
    refusals: list[tuple[object, Exception]] = []
    replica.on_refused = lambda origin, exc: refusals.append((origin, exc))
    replica.apply_update(text(["a😀b"], root="u"))
    assert len(refusals) == 1 and refusals[0][0] == "peer"
    assert "surrogate pair" in str(refusals[0][1])
    assert not replica.pending().deletions
    doc: Doc[Any] = Doc()
    doc.apply_update(replica.encode_update())
    assert str(doc.get("u", type=Text)) == "a😀b"
    Replica("joiner").apply_update(replica.encode_update())


def test_a_held_deletion_refused_without_a_listener_raises() -> None:
    replica = replica_with(deletes((1, 1)))
    with pytest.raises(InvalidUpdate, match="surrogate pair"):
        replica.apply_update(text(["a😀b"]))
    assert read(replica) == "a😀b" and not replica.pending().deletions


def test_a_buffered_item_is_judged_when_it_leaves_the_buffer() -> None:
    replica = replica_with(text(["a😀b"]))
    ref, body, _ = content("string", "X")
    waiting = update(20, 1, [item(ref, body, origin=(W, 1))])  # waits for 20:0
    replica.apply_update(waiting, origin="peer")
    refusals: list[object] = []
    replica.on_refused = lambda origin, exc: refusals.append(origin)
    replica.apply_update(insert(20, "Y", origin=(W, 3)))
    assert refusals == ["peer"] and read(replica) == "a😀bY"


def test_slices_of_a_large_update_never_cut_a_pair() -> None:
    """`slice_update` cuts between structs, so each slice holds whole characters."""
    chunks = ["😀", "a😀", "👩‍👩‍👧", "b", "🎉𝄞"] * 30
    data = text(chunks)
    parsed = parse_update(data, details=True)
    slices = slice_update(data, parsed, {}, max_structs=7)
    assert len(slices) > 10
    replica = Replica("r")
    for part, part_parsed in slices:
        replica.apply_update(part, parsed=part_parsed)
    assert read(replica) == "".join(chunks) == read(replica_with(data))


@st.composite
def texts_and_edits(draw: st.DrawFn) -> tuple[list[str], list[list[tuple[int, int]]], list[int]]:
    """Chunks of a text with astral characters; updates of delete ranges (UTF-16 clock,
    length), some splitting pairs; and insert anchors (the clock an item goes before)."""
    pieces = st.sampled_from(["a", "é", "中", "😀", "𝄞", "👍🏽", "\n"])
    chunk = st.lists(pieces, min_size=1, max_size=5).map("".join)
    chunks = draw(st.lists(chunk, min_size=1, max_size=6))
    units = sum(_units(c) for c in chunks)
    a_range = st.integers(0, units - 1).flatmap(
        lambda start: st.tuples(st.just(start), st.integers(0, units - start))
    )
    updates = draw(st.lists(st.lists(a_range, min_size=1, max_size=3), max_size=4))
    anchors = draw(st.lists(st.integers(0, units), max_size=4, unique=True))
    return chunks, updates, anchors


@settings(max_examples=300)
@given(texts_and_edits())
def test_refused_exactly_when_a_live_pair_is_split(
    case: tuple[list[str], list[list[tuple[int, int]]], list[int]],
) -> None:
    chunks, delete_updates, anchors = case
    units = "".join(chunks).encode("utf-16-le")
    model = [units[2 * k : 2 * k + 2] for k in range(len(units) // 2)]  # one code unit each
    lows = {k for k, unit in enumerate(model) if 0xDC00 <= int.from_bytes(unit, "little") < 0xE000}
    deleted: set[int] = set()
    replica = replica_with(text(chunks))

    def live(low: int) -> bool:
        return not {low - 1, low} & deleted

    for ranges in delete_updates:
        # The engines apply each range as written: one that cuts a pair splits it even when
        # another range deletes the rest.
        cuts = {at for start, length in ranges for at in (start, start + length)}
        data = deletes(*ranges)
        if any(low in cuts and live(low) for low in lows):
            refused(replica, data)
        else:
            replica.apply_update(data)
            deleted |= {k for start, length in ranges for k in range(start, start + length)}
    inserted: dict[int, str] = {}
    for number, at in enumerate(anchors):
        where: dict[str, Any] = {}
        if at > 0:
            where["origin"] = (W, at - 1)
        if at < len(model):
            where["right"] = (W, at)
        data = insert(200 + number, str(number), **where)
        if at in lows and live(at):
            refused(replica, data)
        else:
            replica.apply_update(data)
            inserted[at] = str(number)
    expected = "".join(
        inserted.get(k, "")
        + (unit.decode("utf-16-le", "surrogatepass") if k not in deleted else "")
        for k, unit in enumerate([*model, b""])
    )
    assert read(replica) == expected.encode("utf-16-le", "surrogatepass").decode("utf-16-le")

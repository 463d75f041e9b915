"""`ItemIndex`: an index kept up to date update by update places every id exactly as one built
from the whole document does, and places what Yjs inherits (map keys through origins)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdtdoc import Replica
from crdtdoc.itemindex import ItemIndex, Locator
from crdtdoc.updates import parse_update
from tests.support.builders import random_edit
from tests.support.yjs_items import content, item, update


@given(st.integers(0, 2**32), st.integers(1, 4))
def test_an_index_kept_up_to_date_equals_one_built_from_the_document(
    seed: int, writers: int
) -> None:
    rng = random.Random(seed)
    replicas = [Replica(f"w{i}") for i in range(writers)]
    judge = Replica("judge")
    judge.item_index()  # built now, then extended with every update
    for _ in range(40):
        author = rng.choice(replicas)
        before = judge.version()
        random_edit(author, rng)
        if rng.random() < 0.3:  # nested maps too, overwritten through origins
            author.map("map").set(rng.choice("xy"), {"nested": rng.randint(0, 9)})
        judge.apply_update(author.encode_update(before))
        for other in replicas:
            if rng.random() < 0.5:
                other.apply_update(judge.encode_update(other.version()))
    kept = judge.item_index()
    built = ItemIndex()
    full = judge.encode_update()
    built.add(parse_update(full, details=True).items or [])
    deleted = judge.version().deleted
    for state_client, end in judge.version().clocks.items():
        for clock in range(end):
            a, b = kept.place_of(state_client, clock), built.place_of(state_client, clock)
            assert a is not None and b is not None
            assert (a.parent, a.sub) == (b.parent, b.sub), (state_client, clock, seed)
            assert kept.root_of(state_client, clock) == built.root_of(state_client, clock)
            if not deleted.contains(state_client, clock):  # a deleted string's text is gone
                low = kept.low_half(state_client, clock)
                assert low == built.low_half(state_client, clock), (state_client, clock, seed)


def test_a_map_overwrite_inherits_its_key_from_its_origin() -> None:
    doc: Doc[Any] = Doc(client_id=1)
    doc.get("m", type=Map)["k"] = 1
    index = ItemIndex()
    index.add(parse_update(doc.get_update(), details=True).items or [])
    ref, body, _ = content("any", [2])
    overwrite = parse_update(update(9, 0, [item(ref, body, origin=(1, 0))]), details=True)
    (written,) = overwrite.items or []
    place = Locator(index, [written]).place(written)
    assert place is not None and (place.parent, place.sub) == ("m", "k")
    index.add(overwrite.items or [])
    assert index.root_of(9, 0) == "m" and index.roots_of_range(9, 0, 5) == {"m", None}


def test_chains_longer_than_pythons_stack_are_placed() -> None:
    """Each client's one character anchored on the previous client's: the whole document's
    encoding lists the last client first, so placing its items follows the whole chain."""
    n = 5000
    structs = [item(*content("string", "a")[:2], root="t")]
    data = [update(1, 0, structs)]
    for client in range(2, n + 1):
        data.append(update(client, 0, [item(*content("string", "b")[:2], origin=(client - 1, 0))]))
    replica = Replica("r")
    replica.item_index()
    for one in data:
        replica.apply_update(one)
    full = replica.encode_update()
    rebuilt = ItemIndex()
    rebuilt.add(parse_update(full, details=True).items or [])
    assert rebuilt.root_of(n, 0) == "t" and replica.item_index().root_of(n, 0) == "t"
    assert len(replica.document("t").read()) == n
    judge = Replica("judge")
    judge.apply_update(full)  # one update holding the whole chain, placed in one go
    assert judge.document("t").read() == replica.document("t").read()


def test_the_low_halves_of_surrogate_pairs_are_recorded() -> None:
    """Yjs gives a character beyond U+FFFF two clocks; the index knows which clock is the
    second (low) half of each, across items, and records nothing for other text."""
    structs = [
        item(*content("string", "a😀b")[:2], root="t"),  # 0..3, pair 1-2
        item(*content("string", "中🎉𝄞")[:2], origin=(1, 3)),  # 4..8, pairs 5-6 and 7-8
        item(*content("string", "👍🏽")[:2], origin=(1, 8)),  # 9..12, pairs 9-10 and 11-12
    ]
    index = ItemIndex()
    index.add(parse_update(update(1, 0, structs), details=True).items or [])
    assert [c for c in range(14) if index.low_half(1, c)] == [2, 6, 8, 10, 12]
    assert index.has_pairs() and index.has_pairs(1) and not index.has_pairs(2)
    # only the ids beyond a state are recorded, as for places: here 5, inside the second item
    grown = ItemIndex()
    first = [structs[0], item(*content("string", "中")[:2], origin=(1, 3))]
    grown.add(parse_update(update(1, 0, first), details=True).items or [])
    assert [c for c in range(14) if grown.low_half(1, c)] == [2]
    grown.add(parse_update(update(1, 0, structs), details=True).items or [], {1: 5})
    assert [c for c in range(14) if grown.low_half(1, c)] == [2, 6, 8, 10, 12]

    plain = ItemIndex()
    ascii_and_bmp = [item(*content("string", "plain text, é, 中文")[:2], root="t")]
    plain.add(parse_update(update(2, 0, ascii_and_bmp), details=True).items or [])
    assert not plain.has_pairs()


def test_collected_strings_record_no_pairs() -> None:
    """A string the engines drop (its parent is garbage-collected) is no text to split."""
    doc: Doc[Any] = Doc(client_id=1)
    doc.get("m", type=Map)["gone"] = Map({"x": 1})
    del doc.get("m", type=Map)["gone"]
    index = ItemIndex()
    index.add(parse_update(doc.get_update(), details=True).items or [])
    dropped = update(3, 0, [item(*content("string", "😀")[:2], parent=(1, 0))])
    index.add(parse_update(dropped, details=True).items or [])
    assert not index.has_pairs()


@given(st.integers(0, 2**32), st.integers(0, 60))
def test_an_id_named_by_an_update_is_found_by_its_ends_as_by_bisection(
    seed: int, known: int
) -> None:
    """A large update's structs are found through a map of their first and last ids; every id
    (named or not, below the document's state or not) must give what bisection gives."""
    rng = random.Random(seed)
    replicas = [Replica(f"w{i}") for i in range(2)]
    for _ in range(30):
        random_edit(rng.choice(replicas), rng)
        a, b = replicas
        b.apply_update(a.encode_update(b.version()))
        a.apply_update(b.encode_update(a.version()))
    items = parse_update(replicas[0].encode_update(), details=True).items or []
    assert len(items) > 16  # large enough for the map
    state = {struct.client: min(known, struct.clock + struct.length) for struct in items}
    locator = Locator(ItemIndex(), items, state)
    for struct in items:
        end = struct.clock + struct.length
        for clock in {struct.clock - 1, struct.clock, struct.clock + 1, end - 1, end} - {-1}:
            ref = (struct.client, clock)
            assert locator.find_ref(ref) is locator.find_local(ref[0], ref[1]), ref


def test_the_locator_places_a_callers_copy_of_an_item_as_the_item_itself() -> None:
    """The locator keeps each place on the item it placed (under its own token); a caller that
    passes an equal copy (parsed again, say) gets the same place, and copies made and dropped
    one after another never get another item's answer."""
    from crdtdoc.updates import Item

    def copy_of(one: Item) -> Item:
        return Item(
            one.client, one.clock, one.length, one.content, one.origin,
            one.right_origin, one.parent, one.parent_sub, one.value,
        )  # fmt: skip

    r = Replica("a", client_id=5)
    r.map("m").set("k", {"nested": [1, 2]})
    r.document("d").insert(0, "hello")
    r.document("d").insert(2, "XY")
    items = parse_update(r.encode_update(), details=True).items or []
    locator = Locator(ItemIndex(), items)
    for one in items:
        assert locator.place(copy_of(one)) == locator.place(one)
    for _ in range(200):  # fresh objects, each placed and dropped: answers stay exact
        for one in items:
            assert locator.place(copy_of(one)) == locator.place(one)

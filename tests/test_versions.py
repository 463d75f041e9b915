"""Version laws, on versions of real replicas built from random concurrent histories."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtdoc import InvalidVersionToken, Order, Replica, Version
from crdtdoc.idset import IdSet
from tests.support.builders import content, random_edit


def _history(seed: int) -> list[Replica]:
    """Three replicas with a random, partly shared history; snapshots are taken as copies."""
    rng = random.Random(seed)
    replicas = [Replica(f"r{i}") for i in range(3)]
    for _ in range(rng.randint(0, 25)):
        r = rng.choice(replicas)
        if rng.random() < 0.25:
            other = rng.choice(replicas)
            r.apply_update(other.encode_update(r.version()))
        else:
            random_edit(r, rng)
    return replicas


versions = st.builds(
    lambda clocks, deleted: Version(clocks, IdSet(deleted)),
    st.dictionaries(st.integers(1, 4), st.integers(0, 6), max_size=3),
    st.dictionaries(
        st.integers(1, 4),
        st.lists(st.tuples(st.integers(0, 5), st.integers(6, 9)), max_size=2),
        max_size=3,
    ),
)


@given(versions, versions, versions)
def test_partial_order_laws(a: Version, b: Version, c: Version) -> None:
    assert a <= a
    if a <= b and b <= a:
        assert a == b
    if a <= b and b <= c:
        assert a <= c
    assert a <= a.join(b) and b <= a.join(b)
    assert a.join(b) == b.join(a)
    if a <= c and b <= c:
        assert a.join(b) <= c
    expected = {
        (True, True): Order.EQUAL,
        (True, False): Order.BEFORE,
        (False, True): Order.AFTER,
        (False, False): Order.CONCURRENT,
    }[(a <= b, b <= a)]
    assert a.compare(b) is expected
    assert Version.from_token(a.token()) == a


@pytest.mark.parametrize("seed", range(40))
def test_le_means_seen_every_insert_and_deletion(seed: int) -> None:
    a, b, _ = _history(seed)
    va, vb = a.version(), b.version()
    seen_inserts = all(k <= vb.clocks.get(c, 0) for c, k in va.clocks.items())
    seen_deletes = va.deleted.issubset(vb.deleted)
    assert (va <= vb) == (seen_inserts and seen_deletes)
    # b <= a  <=>  applying a's knowledge to b's holder changes nothing of b's knowledge
    merged = Replica("m")
    merged.apply_update(a.encode_update())
    merged.apply_update(b.encode_update())
    # Same inserts; possibly more deletions: merging concurrent writes to one map key deletes
    # the loser during integration, identically on every replica that merges both.
    assert merged.version().clocks == va.join(vb).clocks
    assert va.join(vb) <= merged.version()
    if vb <= va:
        assert content(merged) == content(a)


@pytest.mark.parametrize("seed", range(40))
def test_equal_versions_iff_identical_content(seed: int) -> None:
    replicas = _history(seed)
    full = Replica("full")
    for r in replicas:
        full.apply_update(r.encode_update())
    for r in replicas:
        synced = Replica("copy")
        synced.apply_update(r.encode_update())
        assert synced.version() == r.version()
        assert content(synced) == content(r)
        if r.version() != full.version():
            assert r.version() < full.version()
        else:
            assert content(r) == content(full)


def test_deletion_moves_the_version_though_the_state_vector_does_not() -> None:
    a = Replica("a")
    a.document("d").insert(0, "hello")
    b = Replica("b")
    b.apply_update(a.encode_update())
    before = b.version()
    b.document("d").delete(0, 1)
    # The delete also appends to the deletions log, but even the raw delete set moved:
    assert not b.version().deleted.issubset(before.deleted)
    assert before.compare(b.version()) is Order.BEFORE
    assert a.version().compare(b.version()) is Order.BEFORE


def test_concurrent_edits_are_concurrent() -> None:
    a, b = Replica("a"), Replica("b")
    a.document("d").insert(0, "x")
    b.document("d").insert(0, "y")
    assert a.version().compare(b.version()) == "concurrent"


def test_token_is_url_safe_and_compact() -> None:
    a = Replica("a", client_id=2**32 - 1)
    a.document("d").insert(0, "some text")
    a.document("d").delete(0, 4)
    token = a.version().token()
    assert token.replace("-", "").replace("_", "").isalnum()
    assert len(token) < 40
    assert Version.from_token(token) == a.version()


@pytest.mark.parametrize(
    "token", ["", "!!!", "AAAA", "Ag", "AQ", "AQEBAQEB" * 3, "x" * 2_000_000, 123]
)
def test_bad_tokens_raise_invalid_token(token: str) -> None:
    with pytest.raises(InvalidVersionToken, match="version token"):  # says what it expected
        Version.from_token(token)


@given(st.text(max_size=60))
def test_any_string_is_a_token_or_invalid_token(token: str) -> None:
    with contextlib.suppress(InvalidVersionToken):
        Version.from_token(token)

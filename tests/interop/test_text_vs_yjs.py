"""Differential test of `Document` text edits against stock Yjs (npm yjs, from the lockfile).

What it proves, for random Y.Texts built by one to three Yjs clients (strings with é, CJK,
emoji and a skin-tone sequence, newlines; formatted inserts and format ranges; JSON embeds and
embedded shared types; deletes; concurrent edits merged by syncing), each applied to a crdtdoc
`Replica`:

- `read()` is the Yjs text with each embed shown as U+FFFC, and `delta()` is Yjs `toDelta()`
  with adjacent runs of equal formatting joined (`runs`; embedded shared types as their JSON
  view): Yjs splits a run at every live format item, even one that changes nothing, and pycrdt
  at deleted ones too, so only the joined form is the same in both.
- One random edit of crdtdoc's (`insert` at any code point index, `delete` of any range,
  `replace` of a unique stretch, `write` of a slightly changed text, keeping or dropping U+FFFC
  placeholders) produces updates that, applied by Yjs to the same base text, read as what Yjs
  makes of the same edit: `ytext.delete(u16(i), u16 length)` and `ytext.insert(u16(i), s)`
  without attributes (the text takes the formatting before it), code point indices converted to
  UTF-16 offsets where an embed counts 1. For `write` and `replace` the same edit is crdtdoc's
  edit script of the old and new texts (`crdtdoc.textmodel.plan`, `script`), applied right to
  left in one transaction. So nothing outside the edited span changes, no embed and no format.
  The two results are compared as a reader sees them (`runs`: adjacent strings of equal
  formatting joined), and Yjs's own result is checked against the same rule computed here
  (`edited`).
- After the edit `delta()` is Yjs's `toDelta()` of the same state (joined), `read()` shows the
  edited text, and the replica stays encodable: its `encode_update()` parses, and a fresh
  replica applying it reads the same.

The oracle's Yjs opens its text before applying the base, as an editor bound to the text does:
Yjs edits formatted text correctly only then. A doc that applies an update before its first
getText() keeps the text's search markers on, finds positions from a cached marker that forgets
the formats before it, and formats inserted text, or removes a format item in a delete's gap,
by how the text's items happen to be laid out rather than by what it reads (text_oracle.mjs
shows both). The oracle also makes each edit that way, and a failure's notes show that result
when it reads otherwise.

A separate test gives crdtdoc updates that delete half of a surrogate pair (which stock Yjs makes
when a client deletes one UTF-16 unit of an emoji) and expects `InvalidUpdate` with nothing
changed; a control checks that what Yjs itself stores after such a delete (U+FFFD for each half)
reads the same in crdtdoc.

The Yjs side is tests/interop/text_oracle.mjs, one Node process for the whole module (JSON lines).
The Hypothesis seed comes from $CRDTDOC_SEED, else at random; every failure reports it (replay
with CRDTDOC_SEED=<seed>), beside Hypothesis's own reproduce blob. $CRDTDOC_TEXT_EXAMPLES sets
the examples per content kind, $CRDTDOC_TEXT_EDITS the edits drawn (a comma-separated subset of
insert,delete,replace,write), to look past one failing kind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import random
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import Phase, assume, given, note, seed, settings
from hypothesis import strategies as st

import crdtdoc
from crdtdoc import InvalidValue, textdiff, textmodel
from crdtdoc.updates import parse_update
from tests.interop.test_yjs_peer import node_peer_available

HERE = Path(__file__).parent
SCRIPT = HERE / "text_oracle.mjs"
EMBED = "\ufffc"
SEED = int(os.environ.get("CRDTDOC_SEED") or random.randrange(2**32))
EXAMPLES = int(os.environ.get("CRDTDOC_TEXT_EXAMPLES", "500"))
"""~2.5 s per content kind when they pass, on two cores; a failure then shrinks for some seconds
(without the explain phase, which would more than double that)."""
EDITS = os.environ.get("CRDTDOC_TEXT_EDITS", "insert,delete,replace,write").split(",")
REPLAY = f"CRDTDOC_SEED={SEED} python -m pytest {Path(__file__).relative_to(HERE.parents[1])}"

Json = Any  # a JSON value as the oracle sends it


# -- the Node oracle ---------------------------------------------------------------------------


class Oracle:
    """text_oracle.mjs, answering one JSON line for each command. A process that died or stopped
    answering is ended, and the next command starts a new one."""

    def __init__(self, stderr: IO[bytes]) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr = stderr  # the process's, kept for the message when it fails

    def _start(self) -> subprocess.Popen[str]:
        self._stderr.seek(0)
        self._stderr.truncate()
        proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        lines: queue.Queue[str] = queue.Queue()  # one queue per process: no stale answers
        threading.Thread(target=self._read, args=(proc, lines), daemon=True).start()
        self._proc, self._lines = proc, lines
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")  # end of output: the process exited

    def _fail(self, what: str) -> AssertionError:
        """Ends the process; the error to raise, with the end of its stderr."""
        self.close()
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace")[-2000:]
        return AssertionError(f"text_oracle.mjs {what}; its stderr ends: {tail}")

    def ask(self, cmd: str, **fields: Json) -> Json:
        """The answer to one command; raises AssertionError if it failed."""
        proc = self._proc or self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            proc.stdin.flush()
        except OSError:
            raise self._fail("stopped reading its input") from None
        try:
            line = self._lines.get(timeout=30)
        except queue.Empty:
            raise self._fail(f"did not answer {cmd} within 30 s") from None
        if not line:
            raise self._fail("exited")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"text_oracle.mjs failed on {cmd} {fields}: {answer['error']}")
        return answer["ok"]

    def close(self) -> None:
        """Closes the process's input, which ends it, and waits for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # it may have died
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    node_peer_available()
    with tempfile.TemporaryFile() as stderr:
        node = Oracle(stderr)
        try:
            yield node
        finally:
            node.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def runs(view: Json) -> list[Json]:
    """The delta with adjacent strings of equal formatting joined: what a reader sees.

    toDelta() (Yjs's, and yrs's diff()) starts a new op at every format item left in the text,
    even one that changes nothing. Yjs's own delete removes such items around the gap it leaves
    (cleanupFormattingGap); yrs's leaves some, and the same text then reads as more ops."""
    out: list[Json] = []
    last_kind = None
    for op, kind in zip(view["delta"], view["kinds"], strict=True):
        if kind == last_kind == "string" and op.get("attributes") == out[-1].get("attributes"):
            out[-1] = {**out[-1], "insert": out[-1]["insert"] + op["insert"]}
        else:
            out.append(op)
        last_kind = kind
    return out


def edited(view: Json, edits: list[tuple[int, int, str]]) -> list[Json]:
    """`runs` of the text after `edits` ([index, delete, insert] in code points, ordered), as
    the model says: the span is deleted, and the inserted text takes the formatting of the
    position before it (none at 0). The check on the oracle's own edit."""
    cells: list[tuple[str, Json, Json]] = []  # (kind, character or embed, attributes)
    for op, kind in zip(view["delta"], view["kinds"], strict=True):
        attrs = op.get("attributes", {})
        if kind == "string":
            cells += [("string", ch, attrs) for ch in op["insert"]]
        else:
            cells.append((kind, op["insert"], attrs))
    for index, delete, insert in reversed(edits):
        attrs = cells[index - 1][2] if index else {}
        cells[index : index + delete] = [("string", ch, attrs) for ch in insert]
    delta = [{"insert": v, "attributes": a} if a else {"insert": v} for _, v, a in cells]
    return runs({"delta": delta, "kinds": [kind for kind, _, _ in cells]})


def read_of(view: Json) -> str:
    """What `read()` must show for a Yjs text: its strings, each embed as U+FFFC."""
    return "".join(
        op["insert"] if kind == "string" else EMBED
        for op, kind in zip(view["delta"], view["kinds"], strict=True)
    )


# -- base texts, as Yjs operations -------------------------------------------------------------

PIECES = ("a", "b", "xy", "Hi", " ", "é", "中文", "😀", "👍🏽", "\n")
texts = st.sampled_from(PIECES + tuple(a + b for a in PIECES for b in PIECES))
"""Typed text: one or two pieces (one draw each, which keeps shrinking fast)."""
STYLES: tuple[dict[str, Json], ...] = (
    {"bold": True},
    {"italic": True},
    {"bold": True, "italic": True},
    {"link": "https://example.com/a"},
)
FORMATS: tuple[dict[str, Json], ...] = (
    *STYLES,
    {"bold": None},
    {"italic": None},
    {"link": None},
    {"link": "https://example.com/b", "bold": None},
)
EMBEDS: tuple[dict[str, Json], ...] = ({"image": "a.png"}, {"image": "b.png"}, {"video": "c.mp4"})
CONTENTS = ("plain", "formatted", "embeds", "types")
"""What a base text may hold: strings; and formats; and JSON embeds; and embedded shared types."""

clients = st.integers(0, 2)
positions = st.integers(0, 40)  # reduced by the oracle to what fits the text


def op_strategy(content: str) -> st.SearchStrategy[dict[str, Json]]:
    styles = st.none() | st.sampled_from(STYLES) if content != "plain" else st.none()
    ops: list[st.SearchStrategy[dict[str, Json]]] = [
        st.fixed_dictionaries(
            {
                "op": st.just("insert"),
                "client": clients,
                "index": positions,
                "text": texts,
                "attrs": styles,
            }
        ),
        st.fixed_dictionaries(
            {"op": st.just("delete"), "client": clients, "index": positions, "length": positions}
        ),
        st.fixed_dictionaries({"op": st.just("sync")}),
    ]
    if content != "plain":
        ops.append(
            st.fixed_dictionaries(
                {
                    "op": st.just("format"),
                    "client": clients,
                    "index": positions,
                    "length": positions,
                    "attrs": st.sampled_from(FORMATS),
                }
            )
        )
    if content in ("embeds", "types"):
        ops.append(
            st.fixed_dictionaries(
                {
                    "op": st.just("embed"),
                    "client": clients,
                    "index": positions,
                    "value": st.sampled_from(EMBEDS),
                    "attrs": styles,
                }
            )
        )
    if content == "types":
        ops.append(
            st.fixed_dictionaries(
                {
                    "op": st.just("type"),
                    "client": clients,
                    "index": positions,
                    "kind": st.sampled_from(("map", "array", "text")),
                }
            )
        )
    return st.one_of(ops)


BASES = {
    content: st.fixed_dictionaries(
        {"clients": st.integers(1, 3), "ops": st.lists(op_strategy(content), max_size=12)}
    )
    for content in CONTENTS
}
"""`build` commands (clients and their operations), by content; made once, as Hypothesis
validates a strategy object on its first draw."""


# -- one crdtdoc edit --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A crdtdoc edit and the same edit for Yjs: [index, delete, insert] in code points."""

    description: str
    apply: Callable[[crdtdoc.Document], None]
    edits: list[tuple[int, int, str]]


def mutated(data: st.DataObject, text: str, label: str) -> str:
    """`text` after a few small changes: a piece typed, a character deleted or replaced (never
    a U+FFFC placeholder), or one placeholder removed (deleting its embed)."""
    for _ in range(data.draw(st.integers(0, 3), label=f"{label}: changes")):
        kinds = ["type"]
        if text.replace(EMBED, ""):
            kinds += ["delete", "retype"]
        if EMBED in text:
            kinds.append("drop embed")
        kind = data.draw(st.sampled_from(kinds), label=f"{label}: change")
        if kind == "type":
            at = data.draw(st.integers(0, len(text)), label=f"{label}: at")
            text = text[:at] + data.draw(texts, label=f"{label}: typed") + text[at:]
            continue
        if kind == "drop embed":
            places = [i for i, ch in enumerate(text) if ch == EMBED]
        else:
            places = [i for i, ch in enumerate(text) if ch != EMBED]
        at = data.draw(st.sampled_from(places), label=f"{label}: at")
        typed = data.draw(texts, label=f"{label}: typed") if kind == "retype" else ""
        text = text[:at] + typed + text[at + 1 :]
    return text


def unique_stretch(data: st.DataObject, text: str) -> tuple[int, str]:
    """A non-empty stretch of `text` that occurs once in it (the whole text, at worst)."""
    start = data.draw(st.integers(0, len(text) - 1), label="replace: start")
    end = data.draw(st.integers(start + 1, len(text)), label="replace: end")
    while text.find(text[start:end], text.find(text[start:end]) + 1) >= 0:
        if end < len(text):
            end += 1
        else:
            start -= 1
    return start, text[start:end]


def script(old: str, new: str) -> list[tuple[int, int, str]]:
    """The same edit as `write(new)` on `old`: crdtdoc's edit script (`textmodel.plan`: the
    readable diff, each embed kept in place). Empty, and the example skipped by `draw_case`,
    when crdtdoc refuses the write (it would move or add an embed)."""
    try:
        return [(e.index, e.delete, e.insert) for e in textmodel.plan(old, new, "the new text")]
    except InvalidValue:
        return [(0, 0, EMBED)]  # marks a refusal: no edit of this model


def draw_case(data: st.DataObject, text: str) -> Case:
    kinds = [k for k in EDITS if k != "replace" or text] or ["insert"]
    kind = data.draw(st.sampled_from(kinds), label="edit")
    n = len(text)
    if kind == "insert":
        at = data.draw(st.integers(0, n), label="insert: at")
        typed = data.draw(texts, label="insert: text")
        return Case(f"insert({at}, {typed!r})", lambda d: d.insert(at, typed), [(at, 0, typed)])
    if kind == "delete":
        at = data.draw(st.integers(0, n), label="delete: at")
        length = data.draw(st.integers(0, n - at), label="delete: length")
        edits = [(at, length, "")] if length else []
        return Case(f"delete({at}, {length})", lambda d: d.delete(at, length), edits)
    if kind == "replace":
        at, old = unique_stretch(data, text)
        new = mutated(data, old, "replace")
        # The edit is the occurrence's own diff: a diff of the whole text may pick another of
        # several identical placeholders (another embed) next to it.
        edits = [(at + i, n, s) for i, n, s in script(old, new)]
        case = Case(f"replace({old!r}, {new!r})", lambda d: d.replace(old, new), edits)
    else:
        new_text = mutated(data, text, "write")
        case = Case(f"write({new_text!r})", lambda d: d.write(new_text), script(text, new_text))
    # A diff that moved a placeholder it also dropped types U+FFFC: not an edit this model has
    # (Yjs would type a character, crdtdoc refuses to make one that reads as an embed).
    assume(not any(EMBED in insert for _, _, insert in case.edits))
    return case


# -- the property ------------------------------------------------------------------------------


def check(oracle: Oracle, base: dict[str, Json], data: st.DataObject) -> None:
    note(f"seed {SEED}; replay with {REPLAY}")
    built = oracle.ask("build", **base)
    update, yjs = unb64(built["update"]), built["view"]
    note(f"base update {built['update']}")
    note(f"Yjs base delta {yjs['delta']}")
    expected = read_of(yjs)
    strings = [
        op["insert"] for op, k in zip(yjs["delta"], yjs["kinds"], strict=True) if k == "string"
    ]
    assert yjs["string"] == "".join(strings), (
        f"seed {SEED}: the oracle's toString() and delta differ"
    )

    replica = crdtdoc.Replica(agent="differential")
    replica.apply_update(update)
    try:
        doc = replica.document("t")
    except crdtdoc.WrongKind:  # only nested types were ever written: as a Y.Array of them is
        assert not {"string", "embed"} & set(yjs["kinds"]), f"seed {SEED}: a text refused"
        return
    assert doc.read() == expected, f"seed {SEED}: read() of the base differs from Yjs"
    assert doc.delta() == runs(yjs), f"seed {SEED}: delta() of the base differs from Yjs"

    case = draw_case(data, expected)
    note(f"edit {case.description}; the same edit in Yjs: {case.edits}")
    produced: list[bytes] = []
    replica.on_update(lambda u, local: produced.append(u) if local else None)
    case.apply(doc)
    answer = oracle.ask(
        "edit", base=built["update"], updates=[b64(u) for u in produced], edits=case.edits
    )
    ours, theirs, stock = answer["ours"], answer["theirs"], answer["stock"]
    if runs(stock) != runs(theirs):
        note(f"Yjs with search markers on makes {stock['delta']} (text_oracle.mjs: why)")
    after = textdiff.apply(expected, [textdiff.Edit(*e) for e in case.edits])
    assert read_of(theirs) == after, f"seed {SEED}: the oracle misplaced the edit"
    assert runs(theirs) == edited(yjs, case.edits), f"seed {SEED}: the oracle and model differ"
    note(f"Yjs after its own edit: {theirs['delta']}")
    note(f"Yjs after crdtdoc's updates: {ours['delta']}")
    assert runs(ours) == runs(theirs), (
        f"seed {SEED}: crdtdoc's {case.description} lands elsewhere than the same edit in Yjs"
    )
    assert doc.read() == after, f"seed {SEED}: read() after {case.description}"
    # The same state: exactly the ops Yjs gives, format boundaries and all.
    assert doc.delta() == runs(ours), f"seed {SEED}: delta() after {case.description}"

    encoded = replica.encode_update()
    parse_update(encoded)
    fresh = crdtdoc.Replica(agent="fresh")
    fresh.apply_update(encoded)
    assert fresh.document("t").read() == after, f"seed {SEED}: a fresh replica reads otherwise"
    assert fresh.document("t").delta() == runs(ours), f"seed {SEED}: fresh delta()"


@pytest.mark.parametrize("content", CONTENTS)
@seed(SEED)
@settings(max_examples=EXAMPLES, phases=[p for p in Phase if p is not Phase.explain])
@given(data=st.data())
def test_text_edits_land_where_yjs_puts_them(
    oracle: Oracle, content: str, data: st.DataObject
) -> None:
    check(oracle, data.draw(BASES[content], label="base"), data)


# -- half of a surrogate pair ------------------------------------------------------------------


def state(replica: crdtdoc.Replica) -> tuple[str, bytes, crdtdoc.Version]:
    return replica.document("t").read(), replica.encode_update(), replica.version()


@pytest.mark.parametrize("half", ["high", "low"])
@pytest.mark.parametrize("delivery", ["two-updates", "merged"])
def test_deleting_half_a_surrogate_pair_is_refused(
    oracle: Oracle, half: str, delivery: str
) -> None:
    """A stock Yjs client deleting one UTF-16 unit of "a😀b" emits a delete set covering half of
    the pair's item. Yjs then reads U+FFFD for each half; yrs cannot split the pair. crdtdoc
    refuses the update that would split it, and keeps its state."""
    made = oracle.ask("surrogate", half=half)
    assert made["view"]["string"] == "a\ufffdb"
    replica = crdtdoc.Replica(agent="judge")
    if delivery == "merged":
        offered = unb64(made["merged"])
    else:
        replica.apply_update(unb64(made["insert"]))
        assert replica.document("t").read() == "a😀b"
        offered = unb64(made["delete"])
    before = state(replica)
    with pytest.raises(crdtdoc.InvalidUpdate, match="surrogate"):
        replica.apply_update(offered)
    assert state(replica) == before


@pytest.mark.parametrize("half", ["high", "low"])
def test_what_yjs_stores_after_deleting_half_a_pair_reads_the_same(
    oracle: Oracle, half: str
) -> None:
    """The control: Yjs's own encoding of that text holds U+FFFD where it split the pair, no half
    character, and crdtdoc accepts it and reads what Yjs reads."""
    made = oracle.ask("surrogate", half=half)
    replica = crdtdoc.Replica(agent="reader")
    replica.apply_update(unb64(made["stored"]))
    assert replica.document("t").read() == read_of(made["view"]) == "a\ufffdb"
    assert replica.document("t").delta() == runs(made["view"])

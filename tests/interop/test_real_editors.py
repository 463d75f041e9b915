"""Real editors on a crdtdoc hub (issue 17): Quill 2 + y-quill and ProseMirror + y-prosemirror,
in headless Chromium, share a room with crdtdoc agents.

How it works: the page sources in editors/ are bundled with esbuild from node_modules (the
lockfile beside this file pins every package; nothing is fetched at test time) into a temporary
folder, which a small http.server thread serves from 127.0.0.1 together with the editors' CSS and
an image (a.png). Each page joins a hub room with y-websocket's WebsocketProvider and exposes
`window.editor`; the test types into it with Playwright's keyboard. A late Yjs joiner
(editors/late_joiner.mjs: yjs + y-websocket in Node) joins the room after each step and reports
what a fresh stock client reads. Screenshots go to tests/output/ (a CI artifact).

The text model the Quill steps assert (crdtdoc's Document): `read()` shows each embed as U+FFFC,
formats take no position, indices count code points of `read()`; an edit lands where a Yjs client
making the same edit at the same position would (an insert takes the formatting of the text
before it, as Y.Text.insert does); `write` changes only the differing span; `delta()` gives the
Quill-style ops (Y.Text.toDelta()). The expected Quill contents after each agent edit are written
out by hand below: that is the point of the test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import shutil
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

import crdtdoc
from crdtdoc import Document, Version
from tests.server.test_web_browser import CHROMIUM_FLAGS, _browser
from tests.support.hubs import hub_in_thread
from tests.support.services import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

    from crdtdoc.client.blocking import BlockingReplica

HERE = Path(__file__).resolve().parent
EDITORS = HERE / "editors"
NODE_MODULES = HERE / "node_modules"
OUTPUT = HERE.parent / "output"
WAIT = 10.0  # seconds: the bound on every wait for a sync
WAIT_MS = WAIT * 1000
EMBED = "\ufffc"  # how Document.read() shows an embed

Op = dict[str, Any]


# -- the harness -------------------------------------------------------------------------------


def _node_packages() -> None:
    """Skips (or, with CRDTDOC_REQUIRE_SERVICES=1, fails) without Node or the editors' packages."""
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    else:
        needed = ["quill", "y-quill", "y-prosemirror", "prosemirror-view", "esbuild", "y-websocket"]
        missing = [name for name in needed if not (NODE_MODULES / name).is_dir()]
        if missing:
            problem = f"{', '.join(missing)} missing: run `npm ci --prefix {HERE}`"
    if problem is not None:
        unavailable(problem)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour (the image the Quill page embeds)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _build_site(site: Path) -> None:
    """Bundles the pages with esbuild (from node_modules, no network) and lays out the site."""
    entries = [str(EDITORS / "quill_page.js"), str(EDITORS / "prosemirror_page.js")]
    esbuild = [str(NODE_MODULES / ".bin" / "esbuild"), *entries, "--bundle", "--format=iife"]
    result = subprocess.run(
        [*esbuild, f"--outdir={site}", "--log-level=warning"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"esbuild failed:\n{result.stderr}"
    for page in ("quill.html", "prosemirror.html"):
        shutil.copy(EDITORS / page, site / page)
    shutil.copy(NODE_MODULES / "quill" / "dist" / "quill.snow.css", site / "quill.snow.css")
    shutil.copy(NODE_MODULES / "prosemirror-view" / "style" / "prosemirror.css", site)
    (site / "a.png").write_bytes(_png(24, 24, (30, 111, 217)))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(site: Path) -> Iterator[str]:
    """Serves `site` over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="editors-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class LateJoiner:
    """editors/late_joiner.mjs: for each request, a fresh stock Yjs client joins the room, syncs,
    and reports what it reads."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["node", str(EDITORS / "late_joiner.mjs")],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, name="late-joiner", daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def read(
        self, hub: str, room: str, texts: tuple[str, ...] = (), fragments: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        request = {"hub": hub, "room": room, "texts": texts, "fragments": fragments}
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._lines.get(timeout=WAIT + 5)
        except queue.Empty:
            raise AssertionError("the late joiner did not answer in time") from None
        if not line:
            raise AssertionError("the late joiner exited")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)


@dataclass
class Editors:
    """What the tests share: a hub, the served pages, a browser and the late joiner."""

    hub: str  # ws://127.0.0.1:port
    site: str  # http://127.0.0.1:port
    browser: Browser
    joiner: LateJoiner


@dataclass
class EditorPage:
    """A page with one editor on a hub room, and every error it logged."""

    page: Page
    room: str
    user: str
    errors: list[str] = field(default_factory=list)

    def version(self) -> Version:
        """What the page's Y.Doc holds, as a crdtdoc Version (for `wait_for`)."""
        clocks = self.page.evaluate("window.editor.stateVector()")
        return Version({int(client): clock for client, clock in clocks.items()})

    def wait_for(self, version: Version) -> None:
        """Returns once the page's Y.Doc holds every struct in `version`."""
        self.page.wait_for_function(
            """(clocks) => {
                const held = window.editor.stateVector()
                return Object.entries(clocks).every(([id, clock]) => (held[id] || 0) >= clock)
            }""",
            arg={str(client): clock for client, clock in version.clocks.items()},
            timeout=WAIT_MS,
        )

    def authors(self) -> set[int]:
        """The clients whose items make up the page's shared type (nested ones included)."""
        return set(self.page.evaluate("window.editor.authors()"))

    def screenshot(self, name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(OUTPUT / name), full_page=True)


@pytest.fixture(scope="module")
def editors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editors]:
    executable = _browser()
    _node_packages()
    from playwright.sync_api import sync_playwright

    site = tmp_path_factory.mktemp("editors")
    _build_site(site)
    joiner = LateJoiner()
    try:
        with (
            hub_in_thread(site / "hub.db") as hub,
            _serve(site) as http,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            try:
                yield Editors(hub=hub, site=http, browser=browser, joiner=joiner)
            finally:
                browser.close()
    finally:
        joiner.close()


def open_editor(editors: Editors, kind: str, room: str, user: str) -> EditorPage:
    """Opens `kind`.html on the hub room; returns once its provider has synced."""
    page = editors.browser.new_page(viewport={"width": 820, "height": 420})
    opened = EditorPage(page, room, user)

    def on_error(error: Error) -> None:
        opened.errors.append(f"{user}: uncaught {error}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(f"{user}: console error {message.text}")

    page.on("pageerror", on_error)
    page.on("console", on_console)
    query = urlencode({"hub": editors.hub, "room": room, "user": user})
    page.goto(f"{editors.site}/{kind}.html?{query}")
    page.wait_for_function("window.editor && window.editor.synced", timeout=WAIT_MS)
    return opened


# -- Quill + y-quill -----------------------------------------------------------------------------

B = {"bold": True}
I = {"italic": True}  # noqa: E741
IMAGE: Op = {"insert": {"image": "a.png"}}


def t(text: str, attributes: dict[str, Any] | None = None) -> Op:
    """A text op, as Quill's getContents() and Y.Text.toDelta() write it."""
    return {"insert": text, "attributes": attributes} if attributes else {"insert": text}


def quill_ops(*ops: Op) -> list[Op]:
    """`ops` plus the line break that ends every Quill document (never in the Y.Text)."""
    last = ops[-1]
    if isinstance(last["insert"], str) and "attributes" not in last:
        return [*ops[:-1], t(last["insert"] + "\n")]
    return [*ops, t("\n")]


def yjs_delta(ops: list[Op]) -> list[Op]:
    """Quill's ops without that final line break: what Y.Text.toDelta() and Document.delta()
    give."""
    last = ops[-1]
    assert last["insert"].endswith("\n") and "attributes" not in last, last
    rest = last["insert"][:-1]
    return [*ops[:-1], t(rest)] if rest else ops[:-1]


def text_of(ops: list[Op]) -> str:
    """What Document.read() shows for `ops` (Yjs delta): each embed is one U+FFFC."""
    return "".join(op["insert"] if isinstance(op["insert"], str) else EMBED for op in ops)


# What the Quill page types (keyboard, Ctrl+B, Ctrl+I, the emoji, then an image embed).
BASE = quill_ops(
    t("Plan: "),
    t("ship", B),
    t(" the "),
    t("quill", I),
    t(" test 😀"),
    IMAGE,
    t(" done"),
)
BASE_TEXT = "Plan: ship the quill test 😀\ufffc done"
assert text_of(yjs_delta(BASE)) == BASE_TEXT
# code points: "😀" is at 26 (two UTF-16 units in Quill), the image at 27, " done" from 28


@dataclass(frozen=True)
class Step:
    """An agent's edit, and the Quill contents it must lead to."""

    what: str
    agent: str  # "alice" or "bob"
    edit: Callable[[Document], None]
    expected: list[Op]


@dataclass(frozen=True)
class QuillTypes:
    """The Quill page types `text` at its end (after the agents' edits), and the contents it
    must lead to."""

    text: str
    expected: list[Op]


# fmt: off
STEPS: dict[str, list[Step | QuillTypes]] = {
    "insert": [
        Step(
            "insert right after the image lands after the image",
            "alice",
            lambda d: d.insert(28, " (fig. 1)"),
            quill_ops(
                t("Plan: "), t("ship", B), t(" the "), t("quill", I), t(" test 😀"),
                IMAGE, t(" (fig. 1) done"),
            ),
        ),
        Step(
            "insert after the emoji (one code point) lands between the emoji and the image",
            "bob",
            lambda d: d.insert(27, "!"),
            quill_ops(
                t("Plan: "), t("ship", B), t(" the "), t("quill", I), t(" test 😀!"),
                IMAGE, t(" (fig. 1) done"),
            ),
        ),
        Step(
            "insert at the end of the bold word is bold, as Y.Text.insert makes it",
            "alice",
            lambda d: d.insert(10, "s"),
            quill_ops(
                t("Plan: "), t("ships", B), t(" the "), t("quill", I), t(" test 😀!"),
                IMAGE, t(" (fig. 1) done"),
            ),
        ),
        Step(
            "insert before the bold word is plain",
            "bob",
            lambda d: d.insert(6, "we "),
            quill_ops(
                t("Plan: we "), t("ships", B), t(" the "), t("quill", I), t(" test 😀!"),
                IMAGE, t(" (fig. 1) done"),
            ),
        ),
        QuillTypes(" ok 👍", quill_ops(
            t("Plan: we "), t("ships", B), t(" the "), t("quill", I), t(" test 😀!"),
            IMAGE, t(" (fig. 1) done ok 👍"),
        )),
    ],
    "write": [
        Step(
            "write changing text before the bold word and after the image keeps both",
            "alice",
            lambda d: d.write("Goal: ship the quill test 😀\ufffc finished"),
            quill_ops(
                t("Goal: "), t("ship", B), t(" the "), t("quill", I), t(" test 😀"),
                IMAGE, t(" finished"),
            ),
        ),
        Step(
            "write removing a span next to the image (not the image) keeps the image",
            "bob",
            lambda d: d.write("Goal: ship the quill\ufffc finished"),
            quill_ops(
                t("Goal: "), t("ship", B), t(" the "), t("quill", I), IMAGE, t(" finished"),
            ),
        ),
        Step(
            "write adding after the italic word (before the image) extends the italic",
            "alice",
            lambda d: d.write("Goal: ship the quill and 😀\ufffc finished"),
            quill_ops(
                t("Goal: "), t("ship", B), t(" the "), t("quill and 😀", I), IMAGE,
                t(" finished"),
            ),
        ),
        QuillTypes(" ok 👍", quill_ops(
            t("Goal: "), t("ship", B), t(" the "), t("quill and 😀", I), IMAGE,
            t(" finished ok 👍"),
        )),
    ],
    "replace": [
        Step(
            "replace of the word after the bold word keeps the bold",
            "alice",
            lambda d: d.replace("the", "our"),
            quill_ops(
                t("Plan: "), t("ship", B), t(" our "), t("quill", I), t(" test 😀"),
                IMAGE, t(" done"),
            ),
        ),
        Step(
            "replace extending the bold word: the added letters are bold",
            "bob",
            lambda d: d.replace("ship", "shipping"),
            quill_ops(
                t("Plan: "), t("shipping", B), t(" our "), t("quill", I), t(" test 😀"),
                IMAGE, t(" done"),
            ),
        ),
        Step(
            "replace of the emoji (one code point) by another keeps the image after it",
            "alice",
            lambda d: d.replace("😀", "🚀"),
            quill_ops(
                t("Plan: "), t("shipping", B), t(" our "), t("quill", I), t(" test 🚀"),
                IMAGE, t(" done"),
            ),
        ),
        Step(
            "replace of a span starting at the image keeps the image",
            "bob",
            lambda d: d.replace("\ufffc done", "\ufffc all done"),
            quill_ops(
                t("Plan: "), t("shipping", B), t(" our "), t("quill", I), t(" test 🚀"),
                IMAGE, t(" all done"),
            ),
        ),
        QuillTypes(" ok 👍", quill_ops(
            t("Plan: "), t("shipping", B), t(" our "), t("quill", I), t(" test 🚀"),
            IMAGE, t(" all done ok 👍"),
        )),
    ],
    "delete": [
        Step(
            "delete of the span between the italic word and the image keeps the image",
            "alice",
            lambda d: d.delete(20, 7),  # " test 😀": 7 code points
            quill_ops(t("Plan: "), t("ship", B), t(" the "), t("quill", I), IMAGE, t(" done")),
        ),
        Step(
            "delete before the bold word keeps the bold",
            "bob",
            lambda d: d.delete(0, 6),
            quill_ops(t("ship", B), t(" the "), t("quill", I), IMAGE, t(" done")),
        ),
        Step(
            "delete after the image keeps the image",
            "alice",
            lambda d: d.delete(15, 5),  # the image is at 14
            quill_ops(t("ship", B), t(" the "), t("quill", I), IMAGE),
        ),
        Step(
            "delete of the image itself",
            "bob",
            lambda d: d.delete(14, 1),
            quill_ops(t("ship", B), t(" the "), t("quill", I)),
        ),
        QuillTypes(" ok 👍", quill_ops(  # typed after the italic word: italic, in Quill
            t("ship", B), t(" the "), t("quill ok 👍", I),
        )),
    ],
}
# fmt: on


def type_base(editor: EditorPage) -> None:
    """The Quill page types BASE as a person would: keys, Ctrl+B, Ctrl+I, an emoji; the image
    through Quill's API (as its toolbar button does once a file is picked)."""
    page = editor.page
    page.locator(".ql-editor").click()
    keys = page.keyboard
    keys.type("Plan: ")
    keys.press("Control+b")
    keys.type("ship")
    keys.press("Control+b")
    keys.type(" the ")
    keys.press("Control+i")
    keys.type("quill")
    keys.press("Control+i")
    keys.type(" test 😀")
    page.evaluate(
        """() => {
            const quill = window.editor.quill
            const at = quill.getSelection(true).index
            quill.insertEmbed(at, 'image', 'a.png', 'user')
            quill.setSelection(at + 1, 0, 'user')
        }"""
    )
    keys.type(" done")


def type_at_end(editor: EditorPage, text: str) -> None:
    """Puts the cursor at the end of the text (before Quill's final line break) and types."""
    editor.page.evaluate(
        "() => { const q = window.editor.quill; q.setSelection(q.getLength() - 1, 0, 'user') }"
    )
    editor.page.keyboard.type(text)


def quill_contents(editor: EditorPage, expected: list[Op]) -> list[Op]:
    """Quill's contents once they equal `expected`, or after a short grace period (a deletion
    may arrive after the structs the page already waited for)."""
    deadline = time.monotonic() + 2.0
    while True:
        ops: list[Op] = editor.page.evaluate("window.editor.quill.getContents().ops")
        if ops == expected or time.monotonic() > deadline:
            return ops
        time.sleep(0.05)


def check_agents_and_joiner(
    editors: Editors, room: str, agents: list[BlockingReplica], expected: list[Op]
) -> None:
    """Every agent reads the editor's text (U+FFFC per embed) and its delta; a late Yjs joiner
    reads the same delta."""
    delta = yjs_delta(expected)
    late = editors.joiner.read(editors.hub, room, texts=("quill",))["texts"]["quill"]
    assert late == delta, "the late Yjs joiner reads another delta"
    for agent in agents:
        assert agent.document("quill").read() == text_of(delta), f"{agent.agent}'s read()"
    for agent in agents:
        assert agent.document("quill").delta() == delta, f"{agent.agent}'s delta()"


@pytest.mark.parametrize("case", list(STEPS))
def test_quill_and_agents_edit_around_embeds_formats_and_emoji(editors: Editors, case: str) -> None:
    room = f"quill-{case}"
    editor = open_editor(editors, "quill", room, user="quill-" + case)
    try:
        type_base(editor)
        assert quill_contents(editor, BASE) == BASE
        url = f"{editors.hub}/{room}"
        with (
            crdtdoc.connect_blocking(url, agent="alice") as alice,
            crdtdoc.connect_blocking(url, agent="bob") as bob,
        ):
            agents = {"alice": alice, "bob": bob}
            typed = editor.version()
            for agent in agents.values():
                agent.wait_for(typed, timeout=WAIT)
            check_agents_and_joiner(editors, room, [alice, bob], BASE)
            for number, step in enumerate(STEPS[case], 1):
                if isinstance(step, QuillTypes):
                    type_at_end(editor, step.text)
                    for agent in agents.values():
                        agent.wait_for(editor.version(), timeout=WAIT)
                    ops = quill_contents(editor, step.expected)
                    assert ops == step.expected, f"step {number}: Quill types {step.text!r}"
                    check_agents_and_joiner(editors, room, [alice, bob], step.expected)
                    continue
                agent = agents[step.agent]
                step.edit(agent.document("quill"))
                agent.flush(timeout=WAIT)
                editor.wait_for(agent.version())
                ops = quill_contents(editor, step.expected)
                assert ops == step.expected, f"step {number}: {step.what}"
                for other in agents.values():
                    other.wait_for(agent.version(), timeout=WAIT)
                check_agents_and_joiner(editors, room, [alice, bob], step.expected)
        assert editor.errors == []
    finally:
        editor.screenshot(f"quill_{case}.png")
        editor.page.close()


# -- ProseMirror + y-prosemirror ---------------------------------------------------------------

# What each page types: plain runs (with emoji) and words made strong (1-tuples).
ANN_LIVE = ["Ann: ", ("fast",), " 😀 "]
BEN_LIVE = ["Ben: ", ("strong",), " 🎉 "]
ANN_OFFLINE = ["A1 ", ("first",), " 🚀 "]
BEN_OFFLINE = ["B1 ", ("second",), " 👍🏽 "]


def type_pm(editor: EditorPage, token: str | tuple[str]) -> None:
    """Types a plain run; or a word (a 1-tuple), then selects it and makes it strong with
    Ctrl+B, and puts the cursor after it. The selection is set through ProseMirror (as a click
    would): keyboard selection (Shift+Left) reaches ProseMirror's state only on the browser's
    asynchronous selectionchange, so a fast Ctrl+B or key would act on a stale selection; and a
    Ctrl+B before typing only sets stored marks, which a remote change arriving before the first
    key clears (y-prosemirror applies it as a transaction)."""
    keys = editor.page.keyboard
    if isinstance(token, tuple):
        word = token[0]
        keys.type(word)
        editor.page.evaluate("(word) => window.editor.select(word)", word)
        keys.press("Control+b")
        editor.page.evaluate("(word) => window.editor.cursorAfter(word)", word)
        keys.press("Control+b")  # the next run is plain (unless a remote change comes first)
    else:
        keys.type(token)


def pm_runs(node: dict[str, Any]) -> list[tuple[str, bool]]:
    """The text runs of a ProseMirror doc JSON: (text, has the strong mark)."""
    if node.get("type") == "text":
        strong = any(mark["type"] == "strong" for mark in node.get("marks", []))
        return [(node["text"], strong)]
    return [run for child in node.get("content", []) for run in pm_runs(child)]


def reconnect(editor: EditorPage) -> None:
    editor.page.evaluate("window.editor.synced = false; window.editor.provider.connect()")
    editor.page.wait_for_function("window.editor.synced", timeout=WAIT_MS)


def test_prosemirror_pages_and_an_agent_in_one_room(editors: Editors) -> None:
    """Two ProseMirror pages type, format and add emoji, live and then concurrently (both
    offline); a crdtdoc agent in the room is refused the ProseMirror fragment as a document
    (WrongKind), never writes into it, and edits its own document meanwhile. Both pages and a
    late joiner end with the same doc; no page logs an error."""
    room = "prosemirror"
    ann = open_editor(editors, "prosemirror", room, user="ann")
    ben = open_editor(editors, "prosemirror", room, user="ben")
    pages = [ann, ben]
    try:
        with crdtdoc.connect_blocking(f"{editors.hub}/{room}", agent="carol") as carol:
            notes = carol.document("notes")
            notes.insert(0, "carol's notes\n")
            for editor in pages:
                editor.page.locator(".ProseMirror").click()
                editor.page.keyboard.press("Control+End")
            # Live: the pages type in turns, each run sent while the other's may be in flight.
            for ann_token, ben_token in zip(ANN_LIVE, BEN_LIVE, strict=True):
                type_pm(ann, ann_token)
                type_pm(ben, ben_token)
                notes.insert(len(notes.read()), f"saw {ann_token} and {ben_token}\n")
            for editor in pages:
                carol.wait_for(editor.version(), timeout=WAIT)
            with pytest.raises(crdtdoc.WrongKind) as refused:
                carol.document("prosemirror")
            assert "XmlFragment" in str(refused.value) and "Y.Text" in str(refused.value)
            # Offline: both pages edit the start of the doc at once; the agent goes on.
            for editor in pages:
                editor.page.evaluate("window.editor.provider.disconnect()")
                editor.page.keyboard.press("Control+Home")
            for ann_token, ben_token in zip(ANN_OFFLINE, BEN_OFFLINE, strict=True):
                type_pm(ann, ann_token)
                type_pm(ben, ben_token)
            notes.insert(0, "both pages offline\n")
            carol.flush(timeout=WAIT)
            for editor in pages:
                reconnect(editor)
            ann.wait_for(ben.version())
            ben.wait_for(ann.version())
            carol.wait_for(ann.version() | ben.version(), timeout=WAIT)
            with pytest.raises(crdtdoc.WrongKind):
                carol.document("prosemirror")  # still refused once the fragment has grown
            late = editors.joiner.read(
                editors.hub, room, texts=("notes",), fragments=("prosemirror",)
            )
            assert late["texts"]["notes"] == [{"insert": notes.read()}]
            assert carol.client_id not in ann.authors() | ben.authors()
            docs = [editor.page.evaluate("window.editor.json()") for editor in pages]
        assert docs[0] == docs[1], "the two ProseMirror pages differ"
        assert late["fragments"]["prosemirror"] == docs[0], "the late joiner reads another doc"
        runs = pm_runs(docs[0])
        text = "".join(run for run, _ in runs)
        strong = "".join(run for run, is_strong in runs if is_strong)
        for token in [*ANN_LIVE, *BEN_LIVE, *ANN_OFFLINE, *BEN_OFFLINE]:
            if isinstance(token, tuple):
                assert token[0] in strong, f"{token[0]!r} is not strong in {runs}"
            else:
                assert token.strip() in text, f"{token!r} is missing from {runs}"
        for editor in pages:
            assert editor.errors == [], editor.errors
    finally:
        for editor in pages:
            editor.screenshot(f"prosemirror_{editor.user}.png")
            editor.page.close()


def test_an_agent_that_opened_the_name_early_never_writes_into_prosemirror(
    editors: Editors,
) -> None:
    """An agent opens document("prosemirror") before any ProseMirror page has written (nothing
    tells it the name is taken yet). Once the page's Y.XmlFragment content has reached it, a
    write through that handle must be refused (WrongKind), not written into the fragment, where
    the page's y-prosemirror throws on every later keystroke and a late joiner cannot read it."""
    room = "prosemirror-early"
    with crdtdoc.connect_blocking(f"{editors.hub}/{room}", agent="dora") as dora:
        early = dora.document("prosemirror")  # the room is empty: nothing to refuse yet
        pm = open_editor(editors, "prosemirror", room, user="pat")
        try:
            pm.page.locator(".ProseMirror").click()
            pm.page.keyboard.type("hello")
            dora.wait_for(pm.version(), timeout=WAIT)
            with pytest.raises(crdtdoc.WrongKind):
                early.insert(0, "X")
            dora.flush(timeout=WAIT)
            pm.page.keyboard.type(" world")
            pm.wait_for(dora.version())
            doc = pm.page.evaluate("window.editor.json()")
            assert pm_runs(doc) == [("hello world", False)]
            late = editors.joiner.read(editors.hub, room, fragments=("prosemirror",))
            assert late["fragments"]["prosemirror"] == doc
            assert dora.client_id not in pm.authors()
            assert pm.errors == []
        finally:
            pm.screenshot("prosemirror_early_agent.png")
            pm.page.close()

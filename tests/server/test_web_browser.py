"""The supervision page in a real browser (headless Chromium): an agent's edit and a task claim
appear without a reload, and nothing a room or its agents name runs as script or becomes markup.
The screenshots are kept in tests/output/ (a CI artifact)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import crdtdoc
from tests.support.hubs import hub_in_thread
from tests.support.services import unavailable

OUTPUT = Path(__file__).resolve().parent.parent / "output"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        why = "headless Chromium (Debian's chromium) and playwright are needed"
        unavailable(why)
    return path


def test_the_page_updates_live_without_a_reload(tmp_path: Path) -> None:
    executable = _browser()
    from playwright.sync_api import expect, sync_playwright

    with (
        hub_in_thread(tmp_path / "hub.db") as url,
        crdtdoc.connect_blocking(url + "/team", agent="alice") as alice,
        sync_playwright() as pw,
    ):
        alice.document("design").write("# Design\nids are UUIDs\n")
        alice.flush()
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(url.replace("ws://", "http://") + "/rooms/team")
            expect(page.locator("pre[data-doc=design]")).to_have_text("# Design\nids are UUIDs\n")
            page_loads = page.evaluate("performance.getEntriesByType('navigation').length")
            # An edit and a claim by the agent show up while the page stays open.
            alice.document("design").replace("UUIDs", "integers")
            task_id = alice.tasks("backlog").add("write migration 267")
            alice.tasks("backlog").claim(task_id)
            alice.flush()
            expect(page.locator("pre[data-doc=design]")).to_have_text(
                "# Design\nids are integers\n", timeout=10_000
            )
            claimed = page.locator(f"[data-task={task_id}]")
            expect(claimed).to_contain_text("write migration 267 - alice", timeout=10_000)
            expect(page.locator("#agents")).to_contain_text("alice")
            expect(page.locator("#agents")).to_contain_text("up to date")
            assert page.evaluate("performance.getEntriesByType('navigation').length") == page_loads
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "supervision_page.png"), full_page=True)
        finally:
            browser.close()


# Each payload, if it ever ran, would set window.__xss and the page's title.
SCRIPT = "window.__xss=1;document.title='pwned'"
ROOM = f"x</script><script>{SCRIPT}</script>'\"&\u2028"
TAG = f'<img src=x onerror="{SCRIPT}">'


def test_hostile_names_and_texts_show_as_text_and_never_run(tmp_path: Path) -> None:
    """A room named to close the script, and an agent whose name, presence, artifact names,
    document text, task title and spec member are markup: all shown literally, none run."""
    executable = _browser()
    from playwright.sync_api import ConsoleMessage, expect, sync_playwright

    with (
        hub_in_thread(tmp_path / "hub.db") as url,
        crdtdoc.connect_blocking(f"{url}/{quote(ROOM, safe='')}", agent=TAG) as agent,
        sync_playwright() as pw,
    ):
        agent.set_presence(status=TAG, task=TAG)
        agent.document(TAG + "doc").write(TAG)
        tasks = agent.tasks(TAG + "tasks")
        tasks.claim(tasks.add(TAG))
        agent.spec(TAG + "spec").set(TAG, TAG)
        agent.flush()
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            console: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                console.append(message.text)

            page.on("console", on_console)
            page.goto(url.replace("ws://", "http://") + "/rooms/" + quote(ROOM, safe=""))
            assert page.evaluate("window.__xss") is None  # the room name ran as script
            expect(page.locator("#room")).to_have_text(ROOM, timeout=10_000)
            expect(page.locator("pre")).to_have_text(TAG)
            expect(page.locator("#artifacts")).to_contain_text(TAG + "doc")
            expect(page.locator("#artifacts")).to_contain_text(TAG + "tasks")
            expect(page.locator("#artifacts .task")).to_contain_text(f"{TAG} - {TAG}")
            expect(page.locator("#artifacts")).to_contain_text(f"{TAG}: {json_string(TAG)}")
            expect(page.locator("#agents")).to_contain_text(f"{TAG} - {TAG} on {TAG}")
            expect(page.locator("#changes")).to_contain_text(f"{TAG} inserted")
            page.wait_for_timeout(300)  # an image's error handler would have fired by now
            assert page.evaluate("window.__xss") is None
            assert page.evaluate("document.querySelectorAll('img').length") == 0
            assert page.evaluate("document.querySelectorAll('script').length") == 1
            assert page.title() != "pwned"
            assert not [m for m in console if "Content Security Policy" in m], console
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "supervision_page_hostile.png"), full_page=True)
        finally:
            browser.close()


def json_string(text: str) -> str:
    """`text` as the page shows a spec value (JSON)."""
    return json.dumps(text, ensure_ascii=False)


def test_the_page_shows_history_blame_and_gates(tmp_path: Path) -> None:
    """A person sees a document's history (and the text at a step, by clicking it), who wrote
    what, and what a task's or a spec's review gate still waits for."""
    executable = _browser()
    from playwright.sync_api import expect, sync_playwright

    with (
        hub_in_thread(tmp_path / "hub.db") as url,
        crdtdoc.connect_blocking(url + "/team", agent="alice") as alice,
        crdtdoc.connect_blocking(url + "/team", agent="bob") as bob,
        sync_playwright() as pw,
    ):
        alice.document("design").write("The API returns JSON.\n")
        alice.flush()
        bob.wait_for(alice.version())
        bob.document("design").replace("JSON", "XML")
        task_id = bob.tasks("backlog").add("ship it", verify=2)
        bob.tasks("backlog").complete(task_id)
        bob.spec("api").set("get", "x")
        bob.spec("api").freeze(approvers=["carol"])
        bob.flush()
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(url.replace("ws://", "http://") + "/rooms/team")
            expect(page.locator(f"[data-task={task_id}]")).to_contain_text("verified 0 of 2")
            expect(page.locator("[data-gate=api]")).to_contain_text("approval by carol")
            design = page.locator("[data-card=design]")
            design.locator("button[data-open=blame]").click()
            blamed = page.locator("pre[data-blame=design] span")
            expect(blamed.first).to_have_attribute("title", "alice", timeout=10_000)
            expect(page.locator("pre[data-blame=design] span[title=bob]")).to_have_text("XML")
            design.locator("button[data-open=blame]").click()  # back to now
            design.locator("button[data-open=history]").click()
            steps = page.locator("ol[data-history=design] li")
            expect(steps.first).to_contain_text("alice inserted 'The API returns JSON.\\n'")
            steps.first.click()
            expect(design.locator("pre[data-doc=design]")).to_have_text(
                "The API returns JSON.\n", timeout=10_000
            )
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "supervision_page_history.png"), full_page=True)
        finally:
            browser.close()

"""The supervision page in a real browser (headless Chromium): an agent's edit and a task claim
appear without a reload. The screenshot is kept in tests/output/ (a CI artifact)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import crdtdoc
from tests.hubs import hub_in_thread

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
        if os.environ.get("CRDTDOC_REQUIRE_SERVICES") == "1":
            pytest.fail(why)
        pytest.skip(why)
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

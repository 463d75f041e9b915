"""`crdtdoc.server.web_history`: the supervision page's past views, `/history`, `/at` and
`/blame`: the library's answers as JSON, with the page's token; bad requests get a 400 with the
reason, never a crash."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import crdtdoc
from tests.server.test_security import SECRET, token
from tests.support.hubs import hub_in_thread


def test_the_past_views_answer_json_and_refuse_bad_requests(tmp_path: Path) -> None:
    """`/history`, `/at` and `/blame`: the library's answers as JSON; an unknown artifact, a
    bad version token or blame of a task list is a 400 with the reason, never a crash."""
    with hub_in_thread(tmp_path / "hub.db") as url:
        with crdtdoc.connect_blocking(url + "/team", agent="alice") as alice:
            alice.document("design").write("one\n")
            first = alice.version().token()
            alice.document("design").write("two\n")
            alice.tasks("backlog").add("x")
            alice.flush()
        base = url.replace("ws://", "http://") + "/rooms/team/"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        status, body = get("history?artifact=design")
        assert status == 200 and len(json.loads(body)["entries"]) == 2  # write "one", then "two"
        status, body = get(f"at?artifact=design&at={first}")
        assert status == 200 and json.loads(body)["view"]["text"] == "one\n"
        status, body = get("blame?artifact=design")
        assert status == 200 and json.loads(body)["spans"][0]["agent"] == "alice"
        for bad, reason in (
            ("history?artifact=nothing", "no artifact named 'nothing'"),
            ("at?artifact=design&at=not-a-token", "InvalidVersionToken"),
            ("blame?artifact=backlog", "blame reads documents"),
        ):
            status, body = get(bad)
            assert status == 400 and reason in body, (bad, body)


def test_the_past_views_need_the_rooms_token(tmp_path: Path) -> None:
    with hub_in_thread(tmp_path / "hub.db", secret=SECRET) as url:
        base = url.replace("ws://", "http://") + "/rooms/team/history?artifact=design"
        for query in ("", f"&token={token('mallory', rooms='other')}"):
            try:
                urllib.request.urlopen(base + query, timeout=10)
            except urllib.error.HTTPError as exc:
                assert exc.code in (401, 403)
            else:
                raise AssertionError(f"answered without a valid token: {query!r}")


def test_a_room_too_large_for_the_page_says_where_to_read_its_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (issue 21): the hub computes these on its event loop, so a room of many tiny
    structs stalled every room for seconds per request; past a bound the page refers to the
    command line, which reads the past on the reader's own machine."""
    from crdtdoc.server import web_history

    monkeypatch.setattr(web_history, "MAX_STRUCTS", 5)
    with hub_in_thread(tmp_path / "hub.db") as url:
        with crdtdoc.connect_blocking(url + "/team", agent="alice") as alice:
            for n in range(10):
                alice.document("design").insert(0, str(n))
            alice.flush()
        base = url.replace("ws://", "http://") + "/rooms/team/"
        try:
            urllib.request.urlopen(base + "blame?artifact=design", timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "crdtdoc history" in exc.read().decode()
        else:
            raise AssertionError("a room past the bound was read")

"""`crdtdoc history`, `doc blame`, `--at` and `revert` against real hub processes: the story
from the README, history kept through compaction and a kill -9 of the hub, and a hub that keeps
no history saying so."""

from __future__ import annotations

import signal
from pathlib import Path

from benchmarks.processes import HubProcess
from tests.support.cli import cli, cli_hub, ok  # noqa: F401 (cli_hub: the fixture "hub")


def test_the_story_history_blame_read_back_and_revert(hub: str) -> None:
    room = "story"
    text = "The API returns JSON.\nRetry up to 3 times.\n"
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin=text))
    before = ok(cli(hub, "version", "--json", room=room, agent="bob"))["version"]
    ok(
        cli(
            hub,
            "doc",
            "edit",
            "design",
            "--old",
            "Retry up to 3 times.",
            "--new",
            "Errors are retried forever.",
            "--json",
            room=room,
            agent="bob",
        )
    )
    task = ok(cli(hub, "tasks", "add", "backlog", "fix retries", "--json", room=room, agent="bob"))

    history = ok(cli(hub, "history", "design", "--json", room=room, agent="carol"))["history"]
    assert isinstance(history, list)
    assert [e["agent"] for e in history] == ["alice", "bob"]  # bob's edit: one commit
    assert "deleted 'Retry up to 3 times'" in str(history[1]["changes"])
    first = history[0]["version"]
    read = ok(cli(hub, "doc", "cat", "design", "--at", first, "--json", room=room))
    assert (read["text"], read["version"]) == (text, first)  # the version it shows

    spans = ok(cli(hub, "doc", "blame", "design", "--json", room=room, agent="carol"))["spans"]
    assert isinstance(spans, list)
    assert {s["agent"] for s in spans} == {"alice", "bob"}
    assert (
        "".join(s["text"] for s in spans) == "The API returns JSON.\nErrors are retried forever.\n"
    )
    lines = cli(hub, "doc", "blame", "design", room=room, agent="carol")
    assert lines.returncode == 0 and lines.stdout.splitlines()[0].startswith("alice ")

    built = ok(cli(hub, "built-on", "alice", "--json", room=room, agent="carol"))["built_on"]
    assert isinstance(built, list) and {e["agent"] for e in built} == {"bob"}
    assert {e["basis"] for e in built} == {"wrote on it"}
    # dave writes elsewhere, after bob's edit reached the hub: the hub had sent it to him
    ok(cli(hub, "doc", "write", "notes", "--json", room=room, agent="dave", stdin="Notes.\n"))
    built = ok(cli(hub, "built-on", "bob", "--since", str(before), "--json", room=room))
    assert [(e["agent"], e["basis"]) for e in built["built_on"]] == [("dave", "had been sent it")]
    assert built["record"] == {"used": True, "unrecorded": 0, "notes": []}
    shown = cli(hub, "built-on", "bob", "--since", str(before), room=room).stdout
    assert "dave inserted 'Notes.\\n'" in shown, shown
    assert "(had been sent it before writing: may have read it)" in shown, shown
    reverted = ok(
        cli(
            hub,
            "revert",
            "bob",
            "--since",
            str(before),
            "--note",
            "the retry fix was hallucinated",
            "--json",
            room=room,
            agent="carol",
        )
    )
    assert reverted["kept"] == [] and reverted["removed"]
    assert reverted["artifacts"] == ["backlog", "design"]
    assert ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"] == text
    listed = ok(cli(hub, "tasks", "list", "backlog", "--json", room=room))
    assert task["id"] not in str(listed)
    feed = ok(cli(hub, "changes", "--since", str(before), "--json", room=room, agent="dave"))
    assert any("hallucinated" in c["text"] and c["agent"] == "carol" for c in feed["changes"])
    # undone by reverting the revert
    ok(cli(hub, "revert", "carol", "--since", str(reverted["before"]), "--json", room=room))
    again = ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"]
    assert again == "The API returns JSON.\nErrors are retried forever.\n"


def test_revert_and_history_say_what_is_wrong_without_a_traceback(hub: str) -> None:
    room = "wrong"
    ok(cli(hub, "doc", "write", "notes", "--json", room=room, stdin="x\n"))
    token = str(ok(cli(hub, "version", "--json", room=room))["version"])
    nobody = cli(hub, "revert", "mallory", "--since", token, room=room)
    assert nobody.returncode != 0 and "no agent named 'mallory'" in nobody.stderr
    bad = cli(hub, "doc", "cat", "notes", "--at", "not a token", room=room)
    assert bad.returncode != 0 and "version token" in bad.stderr
    missing = cli(hub, "history", "nothing-here", room=room)
    assert missing.returncode != 0
    for result in (nobody, bad, missing):
        assert "Traceback" not in result.stderr


def test_history_survives_compaction_and_a_kill_of_the_hub(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub.db", 0, "--compact-log-updates", "2")
    url = hub.start()
    try:
        room = "kept"
        ok(cli(url, "doc", "write", "d", "--json", room=room, stdin="first draft\n"))
        v = ok(cli(url, "version", "--json", room=room))["version"]
        for n in range(4):  # several compactions fold the log into snapshots
            ok(cli(url, "doc", "write", "d", "--json", room=room, stdin=f"draft {n}\n"))
        hub.kill(signal.SIGKILL)
        url = hub.start()
        shown = ok(cli(url, "doc", "cat", "d", "--at", str(v), "--json", room=room, agent="bob"))
        assert shown["text"] == "first draft\n"
        listed = ok(cli(url, "history", "d", "--json", room=room, agent="bob"))["history"]
        assert isinstance(listed, list) and len(listed) >= 5
    finally:
        hub.stop()


def test_a_hub_without_history_says_the_past_is_gone(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub.db", 0, "--no-history")
    url = hub.start()
    try:
        room = "gone"
        ok(cli(url, "doc", "write", "d", "--json", room=room, stdin="first draft\n"))
        v = ok(cli(url, "version", "--json", room=room))["version"]
        ok(cli(url, "doc", "write", "d", "--json", room=room, stdin="second\n"))
        past = cli(url, "doc", "cat", "d", "--at", str(v), room=room, agent="bob")
        assert past.returncode != 0
        assert "--no-history" in past.stderr and "Traceback" not in past.stderr
    finally:
        hub.stop()

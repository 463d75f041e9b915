"""The artifact commands (`crdtdoc doc`, `tasks`, `spec`) against a real hub process: minimal-diff
and guarded writes, task claims and their exit codes, spec conflicts and freezing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pycrdt import Doc, Text

import crdtdoc
from crdtdoc import EMBED, Replica
from tests.support.cli import cli, cli_hub, ok  # noqa: F401 (cli_hub: the fixture "hub")


def test_documents_write_as_minimal_diffs_and_guarded_writes_refuse_stale_reads(hub: str) -> None:
    room = "docs"
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin="# Design\nids are UUIDs\n"))
    read = ok(cli(hub, "doc", "cat", "design", "--json", room=room))
    assert read["text"] == "# Design\nids are UUIDs\n"
    # bob edits the first line; alice rewrites from her old read: bob's edit survives.
    ok(
        cli(
            hub,
            "doc",
            "edit",
            "design",
            "--old",
            "# Design",
            "--new",
            "# Design v2",
            "--json",
            agent="bob",
            room=room,
        )
    )
    # alice's whole-text write is applied as a minimal diff: the change feed shows the word she
    # changed on line 2, not a rewrite of the document.
    before = ok(cli(hub, "version", "--json", room=room))["version"]
    new_text = "# Design v2\nids are integers\n"
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin=new_text))
    assert ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"] == new_text
    feed = ok(cli(hub, "changes", "--since", str(before), "--json", room=room))["changes"]
    assert isinstance(feed, list) and feed
    assert not any("Design" in c["text"] for c in feed), feed
    # A guarded write based on a stale version exits 4 and writes nothing.
    stale = cli(
        hub,
        "doc",
        "edit",
        "design",
        "--old",
        "integers",
        "--new",
        "UUIDs",
        "--expect",
        str(read["version"]),
        "--json",
        agent="carol",
        room=room,
    )
    assert stale.returncode == 4
    assert (
        json.loads(stale.stdout)["error"] == "Conflict"
    )  # decided by the hub (a Conflict is a StaleRead)
    assert all("Change(" not in c for c in json.loads(stale.stdout)["changes"])
    assert "integers" in str(ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"])
    # Not there: exit 8; plain text output for people ends with the version.
    missing = cli(hub, "doc", "edit", "design", "--old", "nowhere", "--new", "x", room=room)
    assert missing.returncode == 8 and "NotFound" in missing.stderr
    people = cli(hub, "doc", "cat", "design", room=room)
    assert people.stdout.startswith("# Design v2") and "version " in people.stderr


def test_documents_with_an_image_read_and_edit_around_it(hub: str) -> None:
    """An editor's text with an image and a bold word: `doc cat` shows the image as U+FFFC,
    `--delta` shows the formatting and the image, and an edit beside it lands beside it."""
    editor: Doc = Doc()
    text = editor.get("design", type=Text)
    text.insert(0, "Owner: bob\n")
    text.insert_embed(0, {"image": "a.png"})
    text.format(1, 6, {"bold": True})
    with crdtdoc.connect_blocking(f"{hub}/images", agent="editor") as r:
        r.apply_update(editor.get_update())
        r.flush(timeout=30)
    assert ok(cli(hub, "doc", "cat", "design", "--json", room="images"))["text"] == (
        f"{EMBED}Owner: bob\n"
    )
    ok(cli(hub, "doc", "edit", "design", "--old", "bob", "--new", "carol", "--json", room="images"))
    people = cli(hub, "doc", "cat", "design", "--delta", room="images")
    assert json.loads(people.stdout) == [
        {"insert": {"image": "a.png"}},
        {"insert": "Owner", "attributes": {"bold": True}},
        {"insert": ": carol\n"},
    ]
    assert ok(cli(hub, "doc", "cat", "design", "--delta", "--json", room="images"))["delta"] == (
        json.loads(people.stdout)
    )


def test_doc_write_with_a_base_keeps_what_others_changed_since(hub: str, tmp_path: Path) -> None:
    room = "based"
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin="one\ntwo\nthree\n"))
    seen = tmp_path / "seen.txt"
    seen.write_text(str(ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"]))
    ok(cli(hub, "doc", "edit", "design", "--old", "one", "--new", "ONE", "--json", room=room))
    mine = tmp_path / "mine.txt"
    mine.write_text("one\ntwo\nthree\nfour\n")
    ok(cli(hub, "doc", "write", "design", str(mine), "--base", str(seen), "--json", room=room))
    text = ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"]
    assert text == "ONE\ntwo\nthree\nfour\n"
    mine.write_text("uno\ntwo\nthree\n")  # the line bob changed since: refused, exit 4
    stale = cli(hub, "doc", "write", "design", str(mine), "--base", str(seen), room=room)
    assert stale.returncode == 4 and "read it again" in stale.stderr, stale.stderr


def test_tasks_and_their_exit_codes(hub: str) -> None:
    room = "tasks"
    printed = cli(hub, "tasks", "add", "side", "first", room=room)
    assert re.fullmatch(r"t[0-9a-f]+\n", printed.stdout), printed.stdout  # ID=$(...) works
    assert printed.stderr.startswith("version ")
    added = ok(cli(hub, "tasks", "add", "backlog", "migration 267", "--json", room=room))
    task_id = str(added["id"])
    claimed = ok(cli(hub, "tasks", "claim", "backlog", task_id, "--json", room=room))
    assert claimed["task"]["assignee"] == "alice"  # type: ignore[index]
    taken = cli(hub, "tasks", "claim", "backlog", task_id, "--json", agent="bob", room=room)
    assert taken.returncode == 5
    assert json.loads(taken.stdout)["holder"] == "alice"
    ok(cli(hub, "tasks", "note", "backlog", task_id, "started", "--json", room=room))
    done = ok(cli(hub, "tasks", "done", "backlog", task_id, "--json", room=room))
    assert done["task"]["status"] == "done"  # type: ignore[index]
    listed = ok(cli(hub, "tasks", "list", "backlog", "--json", room=room))
    notes = [[(n["agent"], n["text"]) for n in t["notes"]] for t in listed["tasks"]]
    assert notes == [[("alice", "started")]]  # type: ignore[union-attr, index]


def test_twenty_claim_races_from_the_command_line_each_have_exactly_one_winner(
    hub: str,
) -> None:
    """alice and bob run `tasks claim` on the same task at the same moment, 20 times: the hub
    decides, so exactly one exits 0 and the other exits 5 naming the winner; the winner's
    claim again renews it, and `release` lets the other claim it."""
    room = "races"
    ids = [
        str(ok(cli(hub, "tasks", "add", "board", f"task {n}", "--json", room=room))["id"])
        for n in range(20)
    ]
    env = dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room)
    command = [sys.executable, "-m", "crdtdoc.cli", "tasks", "claim", "board"]
    winners = []
    for task_id in ids:
        racers = {
            agent: subprocess.Popen(
                [*command, task_id, "--json"],
                env=dict(env, CRDTDOC_AGENT=agent),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for agent in ("alice", "bob")
        }
        results = {agent: (p.wait(timeout=60), p.communicate()[0]) for agent, p in racers.items()}
        codes = sorted(code for code, _ in results.values())
        assert codes == [0, 5], results
        winner = next(agent for agent, (code, _) in results.items() if code == 0)
        loser = "bob" if winner == "alice" else "alice"
        assert json.loads(results[loser][1])["holder"] == winner, results
        winners.append(winner)
    first, winner = ids[0], winners[0]
    other = "bob" if winner == "alice" else "alice"
    ok(cli(hub, "tasks", "claim", "board", first, "--json", agent=winner, room=room))  # renews
    assert cli(hub, "tasks", "claim", "board", first, agent=other, room=room).returncode == 5
    ok(cli(hub, "tasks", "release", "board", first, "--json", agent=winner, room=room))
    claimed = ok(cli(hub, "tasks", "claim", "board", first, "--json", agent=other, room=room))
    assert claimed["task"]["assignee"] == other  # type: ignore[index]
    # The holder reopening the task gives its lease back too: the next claim wins at once.
    ok(cli(hub, "tasks", "reopen", "board", first, "--json", agent=other, room=room))
    ok(cli(hub, "tasks", "claim", "board", first, "--json", agent=winner, room=room))


def test_spec_conflicts_resolve_and_freeze(hub: str) -> None:
    room = "spec"
    # Two agents set User.id concurrently (neither saw the other): a visible conflict.
    a, b = Replica("alice"), Replica("bob")
    a.spec("api").set("User.id", "UUID")
    b.spec("api").set("User.id", 42)
    ok(cli(hub, "version", "--json", room=room))  # the room exists
    import crdtdoc
    from tests.support.aio import run

    async def push() -> None:
        async with crdtdoc.connect(f"{hub}/{room}", agent="loader") as loader:
            loader.apply_update(a.encode_update())
            loader.apply_update(b.encode_update())
            await loader.flush()

    run(push())
    conflict = cli(hub, "spec", "get", "api", "User.id", "--json", room=room)
    assert conflict.returncode == 6 and "ConcurrentValues" in conflict.stdout
    values = json.loads(conflict.stdout)["values"]  # JSON objects, not Python reprs
    assert sorted(str(v["value"]) for v in values) == ["42", "UUID"], values
    conflicts = ok(cli(hub, "spec", "conflicts", "api", "--json", room=room))
    assert sorted(str(v["value"]) for v in conflicts["conflicts"]["User.id"]) == ["42", "UUID"]  # type: ignore[index]
    shown = ok(cli(hub, "spec", "show", "api", "--json", room=room))
    assert shown["members"] == {} and set(shown["conflicts"]) == {"User.id"}  # type: ignore[arg-type]
    ok(cli(hub, "spec", "resolve", "api", "User.id", '"UUID"', "--json", room=room))
    assert ok(cli(hub, "spec", "get", "api", "User.id", "--json", room=room))["value"] == "UUID"
    ok(cli(hub, "spec", "freeze", "api", "--json", room=room))
    frozen = cli(hub, "spec", "set", "api", "User.name", "str", "--json", room=room)
    assert frozen.returncode == 7 and "FrozenError" in frozen.stdout
    shown = ok(cli(hub, "spec", "show", "api", "--json", room=room))
    assert shown["members"] == {"User.id": "UUID"} and shown["frozen_by"] == "alice"


def test_a_file_error_is_one_json_object_too_with_json(hub: str, tmp_path: Path) -> None:
    """A program reading stdout learns why (`--json`), whatever failed: here the file."""
    missing = str(tmp_path / "missing.md")
    for args in (("doc", "write", "design", missing), ("doc", "append", "design", missing)):
        result = cli(hub, *args, "--json", room="files")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        error = json.loads(result.stdout)
        assert error["error"] == "FileNotFoundError" and error["exit"] == 1
        assert "missing.md" in error["message"]


def test_review_gates_from_the_shell(hub: str) -> None:
    room = "gates"
    task = ok(cli(hub, "tasks", "add", "backlog", "ship it", "--verify", "1", "--json", room=room))
    task_id = str(task["id"])
    ok(cli(hub, "tasks", "done", "backlog", task_id, "--json", room=room, agent="bob"))
    own = cli(hub, "tasks", "verify", "backlog", task_id, room=room, agent="bob")
    assert own.returncode == 7 and "another agent must verify" in own.stderr
    shown = ok(cli(hub, "tasks", "show", "backlog", task_id, "--json", room=room))["task"]
    assert isinstance(shown, dict) and shown["status"] == "verifying"
    ok(cli(hub, "tasks", "verify", "backlog", task_id, "--json", room=room, agent="carol"))
    shown = ok(cli(hub, "tasks", "show", "backlog", task_id, "--json", room=room))["task"]
    assert isinstance(shown, dict) and (shown["status"], shown["verified_by"]) == (
        "done",
        ["carol"],
    )

    ok(cli(hub, "spec", "set", "api", "get", "x", "--json", room=room))
    proposed = ok(cli(hub, "spec", "freeze", "api", "--quorum", "1", "--json", room=room))
    assert proposed["frozen"] is False
    approved = ok(cli(hub, "spec", "approve", "api", "--json", room=room, agent="dave"))
    assert approved["frozen"] is True


def test_freezing_a_spec_that_is_not_there_is_refused(hub: str) -> None:
    """Review (issue 21): a mistyped name made a new, empty spec, frozen for good."""
    result = cli(hub, "spec", "freeze", "no-such-spec", room="typo")
    assert result.returncode == 8 and "no spec named 'no-such-spec'" in result.stderr
    assert "no-such-spec" not in str(ok(cli(hub, "artifacts", "--json", room="typo")))

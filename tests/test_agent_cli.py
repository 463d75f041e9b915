"""The agents' command line against a real hub process: results, JSON, exit codes, the change
feed, watch and peers (the artifact commands: tests/test_artifact_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import crdtdoc
from crdtdoc.client.connection import room_urls
from crdtdoc.tokens import create_token
from crdtdoc.versions import Version
from tests.support.cli import cli, cli_hub, ok  # noqa: F401 (cli_hub: the fixture "hub")
from tests.support.hubs import HubProcess


def test_changes_watch_peers_and_an_unreachable_hub(hub: str, tmp_path: Path) -> None:
    room = "feed"
    start = ok(cli(hub, "version", "--json", room=room))["version"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "crdtdoc.cli", "watch", "--for", "15", "--json"],
        env=dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT="watcher"),
        stdout=subprocess.PIPE,
        text=True,
    )
    import time

    time.sleep(2.5)  # the watcher is connected and present
    peers = ok(cli(hub, "peers", "--json", room=room))
    assert [p["agent"] for p in peers["peers"]] == ["watcher"]  # type: ignore[union-attr, index]
    ok(cli(hub, "tasks", "add", "plan", "write the schema", "--json", agent="bob", room=room))
    ok(cli(hub, "doc", "write", "notes", "--json", agent="bob", room=room, stdin="a b c\n"))
    ok(cli(hub, "doc", "write", "notes", "--json", agent="carol", room=room, stdin="a c\n"))
    out, _ = watcher.communicate(timeout=30)
    seen = [json.loads(line) for line in out.splitlines()]
    assert any(c["agent"] == "bob" and "write the schema" in c["text"] for c in seen), seen
    deleted = [c for c in seen if "deleted" in c["text"]]
    assert deleted and all(c["agent"] == "carol" for c in deleted), seen  # not "someone"
    changes = ok(cli(hub, "changes", "--since", str(start), "--json", room=room))
    assert any("bob" in c["text"] for c in changes["changes"])  # type: ignore[union-attr, index]
    unreachable = cli("ws://127.0.0.1:9", "version", "--timeout", "1", "--json", room=room)
    assert unreachable.returncode == 3 and "NotConnected" in unreachable.stdout
    assert "crdtdoc serve" in unreachable.stdout and "wait_synced" not in unreachable.stdout
    started = time.monotonic()  # a hub that is down fails after --connect-timeout (5 s), not 30
    unreachable = cli("ws://127.0.0.1:9", "doc", "cat", "design", room=room)
    assert unreachable.returncode == 3 and "--connect-timeout" in unreachable.stderr
    assert time.monotonic() - started < 15 and unreachable.stderr.count("\n") == 1
    usage = cli(hub, "tasks", "claim", room=room)
    assert usage.returncode == 2


def test_a_failing_hub_store_has_its_own_exit_code_and_a_message_for_a_process() -> None:
    """A command that ends cannot keep edits "locally": the message says the hub holds them."""
    from crdtdoc.agent_cli import exit_code
    from crdtdoc.cli import describe
    from crdtdoc.errors import HubStorageError

    failing = HubStorageError("database or disk is full")
    assert exit_code(failing) == 9
    said = describe(failing)
    assert "database or disk is full" in said and "the hub holds this change" in said
    assert "kept locally" not in said


def test_a_refused_token_or_room_fails_at_once_with_exit_7(tmp_path: Path) -> None:
    """The hub refuses a bad token (4401) or a room outside the token's scope (4403) before any
    exchange: retrying cannot help, so the command says so at once instead of retrying for its
    whole --timeout and blaming the network (exit 3)."""
    secret = "s" * 32
    (tmp_path / "secret").write_text(secret)
    process = HubProcess(tmp_path / "hub.db", 0, "--secret-file", str(tmp_path / "secret"))
    url = process.start()
    try:
        scoped = create_token(secret.encode(), "alice", rooms="team-*")
        for token, code, words in (
            ("not-a-token", 4401, "not a crdtdoc token"),
            (scoped, 4403, "does not allow room"),
        ):
            started = time.monotonic()
            result = cli(url, "doc", "cat", "design", room="other", CRDTDOC_TOKEN=token)
            assert result.returncode == 7, result.stderr
            assert str(code) in result.stderr and words in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1, result.stderr  # the error alone: no log noise
            assert time.monotonic() - started < 15  # not the 30 s timeout
        # A read-only token's write: refused by the hub with its reason (it exited 3, "hub
        # unreachable", after the hub closed the link over it), and nothing stored.
        reader = create_token(secret.encode(), "alice", rooms="*", read_only=True)
        refused = cli(
            url, "doc", "append", "design", room="other", stdin="x\n", CRDTDOC_TOKEN=reader
        )
        assert refused.returncode == 7, refused.stderr
        assert "read-only" in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
        assert cli(url, "doc", "cat", "design", room="other", CRDTDOC_TOKEN=reader).returncode == 8
    finally:
        process.stop()


def test_usage_mistakes_and_missing_names_have_their_exit_codes(hub: str) -> None:
    room = "mistakes"
    bare = dict(os.environ)
    for variable in ("CRDTDOC_HUB", "CRDTDOC_ROOM"):
        bare.pop(variable, None)
    missing = subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", "doc", "cat", "design"],
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "pass --hub" in missing.stderr
    for bad in (
        ["tasks", "claim", "b", "t1", "--ttl", "0"],
        ["doc", "cat", "d", "--timeout", "-1"],
    ):
        assert cli(hub, *bad, room=room).returncode == 2, bad
    unguarded = cli(hub, "doc", "edit", "d", "--old", "a", "--new", "b", "--expect", "", room=room)
    assert unguarded.returncode == 2 and "guards nothing" in unguarded.stderr
    token = cli(hub, "version", room=room).stdout.strip()  # TOKEN=$(crdtdoc version)
    assert token and crdtdoc.Version.from_token(token) is not None
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin="x\n" * 200_000))
    typo = cli(hub, "doc", "cat", "desing", room=room)
    assert typo.returncode == 8 and "'desing'" in typo.stderr and "design" in typo.stderr
    assert cli(hub, "tasks", "list", "nosuchlist", room=room).returncode == 8
    task_id = str(ok(cli(hub, "tasks", "add", "board", "t", "--json", room=room))["id"])
    contested = ok(cli(hub, "tasks", "list", "board", "--status", "contested", "--json", room=room))
    assert contested["tasks"] == []
    # A reader that goes away (`| head -c 10`): no "Broken pipe" noise, no traceback.
    env = dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT="alice")
    reader = subprocess.Popen(
        [sys.executable, "-m", "crdtdoc.cli", "doc", "cat", "design", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.read(10)
    reader.stdout.close()
    assert reader.wait(timeout=60) == 141
    assert reader.stderr.read() == b""
    assert task_id


def test_room_names_are_passed_whole_and_hub_urls_must_not_name_one(hub: str) -> None:
    for room in ("a b", "a?b", "a#b/c"):
        ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin=f"in {room}\n"))
    for room in ("a b", "a?b", "a#b/c"):
        assert ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"] == f"in {room}\n"
    with crdtdoc.connect_blocking(room_urls(hub, "a?b"), agent="carol") as r:
        assert r.document("design").read() == "in a?b\n"
    assert cli(hub, "doc", "cat", "design", room="a").returncode == 8  # room "a" is another
    wrong = cli(f"{hub}/team", "doc", "cat", "design", room="team")
    assert wrong.returncode == 2 and "names a path" in wrong.stderr


def test_one_agent_s_commands_share_a_client_id_so_tokens_stay_short(
    hub: str, tmp_path: Path
) -> None:
    """Each command used to be a new Yjs client, so the room's version token grew by about 8
    characters per write. An agent's commands now reuse one client id (never two processes at
    once, never after a write the hub did not confirm)."""
    room = "tokens"
    state = str(tmp_path / "state")
    env = dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT="alice")
    env["CRDTDOC_STATE_DIR"] = state

    def add(title: str) -> dict[str, Any]:
        return ok(
            cli(hub, "tasks", "add", "b", title, "--json", room=room, CRDTDOC_STATE_DIR=state)
        )

    first = add("task 0")["version"]
    for n in range(1, 20):
        last = add(f"task {n}")["version"]
    assert len(last) <= len(first) + 4, (first, last)  # one client: only its clock grows
    # Two commands of one agent at the same moment: each gets its own id, both succeed.
    racing = [
        subprocess.Popen(
            [sys.executable, "-m", "crdtdoc.cli", "tasks", "add", "b", f"race {n}", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    assert [p.wait(timeout=60) for p in racing] == [0, 0]
    listed = ok(cli(hub, "tasks", "list", "b", "--json", room=room))
    assert len(listed["tasks"]) == 22  # type: ignore[arg-type]


def test_numbers_artifacts_append_and_whole_tasks(hub: str) -> None:
    room = "more"
    numbers = [int(ok(cli(hub, "number", "migrations", "--json", room=room))["value"])]
    numbers.append(
        int(ok(cli(hub, "number", "migrations", "--json", agent="bob", room=room))["value"])
    )
    assert numbers[1] > numbers[0]  # never the same number twice
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin="one\n"))
    ok(cli(hub, "doc", "append", "design", "--json", room=room, stdin="two\n"))
    assert ok(cli(hub, "doc", "cat", "design", "--json", room=room))["text"] == "one\ntwo\n"
    first = str(ok(cli(hub, "tasks", "add", "board", "first", "--json", room=room))["id"])
    ok(cli(hub, "tasks", "note", "board", first, "halfway", "--json", room=room))
    ok(cli(hub, "tasks", "done", "board", first, "--json", room=room))
    shown = ok(cli(hub, "tasks", "show", "board", first, "--json", room=room))["task"]
    assert shown["completed_by"] == ["alice"] and shown["notes"][0]["text"] == "halfway"  # type: ignore[index]
    assert ok(cli(hub, "tasks", "ready", "board", "--json", room=room))["tasks"] == []
    ok(cli(hub, "tasks", "reopen", "board", first, "--json", room=room))
    ready = ok(cli(hub, "tasks", "ready", "board", "--json", room=room))["tasks"]
    assert [t["id"] for t in ready] == [first]  # type: ignore[union-attr, index]
    kinds = ok(cli(hub, "artifacts", "--json", room=room))["artifacts"]
    assert kinds == {"design": "document", "board": "tasks"}


def test_changes_wait_blocks_until_another_agent_changes_something(hub: str) -> None:
    room = "waiting"
    ok(cli(hub, "doc", "write", "design", "--json", room=room, stdin="v1\n"))
    env = dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT="alice")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "crdtdoc.cli", "changes", "--wait", "30", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # connected and waiting
    started = time.monotonic()
    ok(cli(hub, "doc", "write", "design", "--json", agent="bob", room=room, stdin="v2\n"))
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and time.monotonic() - started < 20  # not the 30 s
    assert any(c["agent"] == "bob" for c in json.loads(out)["changes"]), out
    quiet = ok(cli(hub, "changes", "--wait", "0.5", "--json", room=room))
    assert quiet["changes"] == []
    assert cli(hub, "changes", room=room).returncode == 2  # neither --since nor --wait


def test_a_guarded_add_prints_a_version_that_holds_the_new_task(hub: str) -> None:
    """`tasks add --expect` printed the version from before its own write (the write was
    still open when it printed): a token pasted to another agent did not contain the task."""
    room = "guarded-add"
    start = str(ok(cli(hub, "version", "--json", room=room))["version"])
    added = ok(
        cli(hub, "tasks", "add", "backlog", "migrate", "--expect", start, "--json", room=room)
    )
    now = ok(cli(hub, "version", "--json", agent="bob", room=room))["version"]
    assert Version.from_token(str(now)) <= Version.from_token(str(added["version"]))


def test_a_write_too_large_for_the_hub_is_refused_at_once_and_stores_nothing(hub: str) -> None:
    """A 1.3 MB `doc write` waited the whole --timeout and exited 3 (the hub closed the link
    over it again and again); the hub's welcome says its limit, so it is refused at once."""
    room = "large"
    started = time.monotonic()
    result = cli(hub, "doc", "write", "big", "--json", room=room, stdin="x" * 1_300_000)
    assert result.returncode == 7, result.stderr
    error = json.loads(result.stdout)
    assert error["error"] == "TooLarge" and "max_message_bytes" in error["message"]
    assert time.monotonic() - started < 15  # not the 30 s timeout
    assert cli(hub, "doc", "cat", "big", room=room).returncode == 8  # nothing was stored
    ok(cli(hub, "doc", "write", "big", "--json", room=room, stdin="x" * 100_000))


def test_new_user_review_surprises_are_gone(hub: str) -> None:
    """What a new user hit: releasing another's claim said "released" and did nothing; reads
    of mistyped names printed empty results with exit 0; a malformed version token and a name
    of another kind exited 1; refused commands made the next one take a new client id, so
    tokens grew; `ready` could not be used, as no command set dependencies."""
    room = "review"
    first = ok(cli(hub, "tasks", "add", "backlog", "schema", "--json", room=room))["id"]
    then = ok(
        cli(
            hub,
            "tasks",
            "add",
            "backlog",
            "api",
            "--depends-on",
            str(first),
            "--label",
            "x",
            "--json",
            room=room,
        )
    )
    ready = ok(cli(hub, "tasks", "ready", "backlog", "--json", room=room))["tasks"]
    assert [t["id"] for t in ready] == [first]  # type: ignore[union-attr, index]
    ok(cli(hub, "tasks", "claim", "backlog", str(first), "--json", room=room))
    for _ in range(3):  # bob loses claims, then writes: his commands keep one client id
        assert (
            cli(hub, "tasks", "claim", "backlog", str(first), agent="bob", room=room).returncode
            == 5
        )
    released = cli(hub, "tasks", "release", "backlog", str(first), agent="bob", room=room)
    assert released.returncode == 8 and "claimed by alice" in released.stderr, released.stderr
    ok(cli(hub, "doc", "write", "notes", "--json", agent="bob", room=room, stdin="b\n"))
    token = str(ok(cli(hub, "version", "--json", room=room))["version"])
    assert len(Version.from_token(token).clocks) == 2, token  # alice's id and bob's id
    for args in (
        ("spec", "show", "nospec"),
        ("spec", "conflicts", "nospec"),
        ("tasks", "ready", "nolist"),
        ("doc", "edit", "nodoc", "--old", "a", "--new", "b"),
        ("doc", "cat", "backlog"),  # a task list, not a document
    ):
        result = cli(hub, *args, room=room)
        assert result.returncode == 8, (args, result.stderr)
    assert (
        "no document named 'nodoc'"
        in cli(hub, "doc", "edit", "nodoc", "--old", "a", "--new", "b", room=room).stderr
    )
    assert cli(hub, "changes", "--since", "bogus", room=room).returncode == 2
    assert ok(cli(hub, "artifacts", "--json", room=room))["artifacts"] == {
        "backlog": "tasks",
        "notes": "document",
    }  # nothing made by the failed commands
    assert then["id"]


def test_an_empty_setting_is_refused_not_taken_from_the_environment(hub: str) -> None:
    """`--hub ""` (an unset shell variable) used CRDTDOC_HUB silently: another hub than meant."""
    for flag in ("--hub", "--room", "--agent"):
        result = cli(hub, "version", flag, "", "--json", room="r")
        assert result.returncode == 2, result.stderr
        assert f"{flag} is empty" in result.stderr and "Traceback" not in result.stderr

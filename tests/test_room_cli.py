"""`crdtdoc lease|watch|number` and fenced writes, through the real command against a real hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.cli import cli, cli_hub, ok  # noqa: F401 (cli_hub: the fixture "hub")


def test_leases_from_the_shell_fence_a_paused_holder_out(hub: str) -> None:
    """alice takes the deploy lease and writes under its fencing token; her lease runs out while
    she is "paused"; bob takes it (a higher token); alice's late write under her old token is
    refused by the hub (exit 4) and nothing of it is stored."""
    room = "deploys"
    token = int(
        ok(cli(hub, "lease", "acquire", "deploy", "--ttl", "60", "--json", room=room))["token"]
    )
    fenced = f"deploy:{token}"
    ok(cli(hub, "doc", "append", "log", "--fence", fenced, "--json", room=room, stdin="a1\n"))
    held = cli(hub, "lease", "acquire", "deploy", "--json", agent="bob", room=room)
    assert held.returncode == 5, held.stderr
    assert json.loads(held.stdout)["holder"] == "alice"
    listed = ok(cli(hub, "lease", "list", "--json", agent="carol", room=room))
    assert [(e["name"], e["holder"]) for e in listed["leases"]] == [("deploy", "alice")]  # type: ignore[union-attr, index]
    assert listed["leases"][0]["token"] is None  # type: ignore[index]  # not carol's to see
    # Asking again renews it (here to 1 s: alice is about to be "paused" past it).
    again = ok(cli(hub, "lease", "acquire", "deploy", "--ttl", "1", "--json", room=room))
    assert again["token"] == token  # the same agent asking again: still hers
    bobs = ok(
        cli(hub, "lease", "acquire", "deploy", "--wait", "10", "--json", agent="bob", room=room)
    )
    assert int(str(bobs["token"])) > token  # alice's ran out while bob waited
    late = cli(hub, "doc", "append", "log", "--fence", fenced, "--json", room=room, stdin="a2\n")
    assert late.returncode == 4, late.stderr
    assert json.loads(late.stdout)["error"] == "FencedOut"
    renew = cli(hub, "lease", "renew", "deploy", str(token), "--json", room=room)
    assert renew.returncode == 4 and json.loads(renew.stdout)["error"] == "LeaseLost"
    bob_fence = f"deploy:{bobs['token']}"
    ok(
        cli(
            hub,
            "doc",
            "append",
            "log",
            "--fence",
            bob_fence,
            "--json",
            agent="bob",
            room=room,
            stdin="b1\n",
        )
    )
    assert ok(cli(hub, "doc", "cat", "log", "--json", room=room))["text"] == "a1\nb1\n"
    ok(cli(hub, "lease", "release", "deploy", str(bobs["token"]), "--json", agent="bob", room=room))
    assert ok(cli(hub, "lease", "list", "--json", room=room))["leases"] == []
    # Released (or run out), a lease fences no write; nor does another agent's lease.
    late = cli(hub, "doc", "append", "log", "--fence", bob_fence, agent="bob", room=room, stdin="x")
    assert late.returncode == 4 and "not held any more" in late.stderr, late.stderr
    carols = ok(cli(hub, "lease", "acquire", "deploy", "--json", agent="carol", room=room))
    stolen = cli(
        hub, "doc", "append", "log", "--fence", f"deploy:{carols['token']}", room=room, stdin="x"
    )
    assert stolen.returncode == 4 and "held by carol, not by alice" in stolen.stderr
    assert ok(cli(hub, "doc", "cat", "log", "--json", room=room))["text"] == "a1\nb1\n"
    for bad in ("deploy", "deploy:x", ":3", "deploy:0"):
        usage = cli(hub, "doc", "append", "log", "--fence", bad, room=room, stdin="x\n")
        assert usage.returncode == 2 and "LEASE:TOKEN" in usage.stderr, usage.stderr


def test_watch_since_a_token_misses_nothing_between_two_commands(hub: str) -> None:
    room = "watched"
    mark = ok(cli(hub, "version", "--json", room=room))["version"]
    ok(cli(hub, "tasks", "add", "plan", "write the schema", "--json", agent="bob", room=room))
    ok(cli(hub, "doc", "write", "notes", "--json", agent="carol", room=room, stdin="hello\n"))
    out = subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", "watch", "--since", str(mark), "--for", "1.5"],
        env=dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM=room, CRDTDOC_AGENT="alice"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "bob added task" in out and "write the schema" in out, out
    assert "carol" in out and "notes" in out, out


def test_a_status_set_by_one_command_shows_in_peers_after_it_ended(hub: str) -> None:
    """An agent that runs one command at a time is never connected for long: the hub keeps its
    status for --for seconds, under its own name, until it clears it."""
    room = "status"
    set_ = ok(
        cli(
            hub,
            "status",
            "reviewing the schema",
            "--task",
            "t1",
            "--for",
            "60",
            "--json",
            room=room,
        )
    )
    assert set_["status"] == "reviewing the schema" and set_["task"] == "t1"
    peers = ok(cli(hub, "peers", "--json", agent="bob", room=room))["peers"]
    kept = [p for p in peers if p["agent"] == "alice"]  # type: ignore[union-attr, index]
    assert len(kept) == 1 and kept[0]["status"] == "reviewing the schema", peers
    assert kept[0]["task"] == "t1" and kept[0]["until"] > time.time() + 50
    text = cli(hub, "peers", agent="bob", room=room).stdout
    assert "alice  reviewing the schema  t1  (until " in text, text
    ok(cli(hub, "status", "--clear", "--json", room=room))
    peers = ok(cli(hub, "peers", "--json", agent="bob", room=room))["peers"]
    assert not [p for p in peers if p["agent"] == "alice"], peers  # type: ignore[union-attr, index]
    for args in ((), ("busy", "--clear")):
        assert cli(hub, "status", *args, room=room).returncode == 2
    assert cli(hub, "status", "x" * 201, room=room).returncode == 2  # refused as invalid


def test_ctrl_c_while_waiting_exits_130_with_one_line(hub: str) -> None:
    import signal

    waiting = subprocess.Popen(
        [sys.executable, "-m", "crdtdoc.cli", "changes", "--wait", "60"],
        env=dict(os.environ, CRDTDOC_HUB=hub, CRDTDOC_ROOM="interrupted", CRDTDOC_AGENT="alice"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)  # connected and waiting (well past start-up, even on a loaded machine)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 130, err
    assert err == "crdtdoc: interrupted\n" and out == "", (out, err)


def test_hostile_lease_arguments_are_bad_usage_not_tracebacks(hub: str) -> None:
    """A fencing token past 2**63 reached msgpack and printed a 50-line traceback (exit 1)."""
    huge = "9" * 23
    for args in (
        ("doc", "append", "notes", "--fence", f"x:{huge}"),
        ("lease", "renew", "x", huge),
        ("lease", "release", "x", "-1"),
        ("lease", "acquire", ""),
        ("lease", "acquire", "x" * 201),
    ):
        result = cli(hub, *args, room="hostile", stdin="x\n")
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "error:" in result.stderr, result.stderr
    usage = cli(hub, "lease", "acquire", "", "--json", room="hostile")  # JSON for programs too
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"] == "UsageError"


def test_a_token_of_another_agent_is_bad_usage(hub: str) -> None:
    """The hub acts as the token's agent: run as --agent eve with alice's token, the command
    said "eve: hello" while the hub kept the status as alice's, and claims looked abandoned."""
    from crdtdoc.tokens import create_token

    alices = create_token(b"s" * 32, "alice")
    result = cli(hub, "status", "hello", agent="eve", room="mixed", CRDTDOC_TOKEN=alices)
    assert result.returncode == 2 and "--agent alice" in result.stderr, result.stderr


def test_names_no_store_can_hold_are_usage_errors_not_tracebacks(hub: str) -> None:
    """Bytes that are not UTF-8 on the command line arrive as lone surrogates; a NUL arrives
    from a script. Either, in a lease, sequence, status or task, is refused before anything is
    sent: exit 2 and a message, with --json too."""
    room = "bad-names"
    for args in (
        ("number", "\udcff"),
        ("lease", "acquire", "\udced\udca0\udc80"),
        ("status", "\udcff\udcfe"),
        ("status", "ok", "--task", "\udced\udca0\udc80"),
    ):
        for json_flag in ((), ("--json",)):
            result = cli(hub, *args, *json_flag, room=room)
            assert result.returncode == 2, (args, result.stderr)
            assert "Traceback" not in result.stderr and "surrogate" in result.stderr

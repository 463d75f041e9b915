"""The command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crdtdoc import Replica


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", *args], input=stdin, capture_output=True, check=False
    )


def test_inspect_reports_ranges_references_and_deletes(tmp_path: Path) -> None:
    r = Replica("a", client_id=42)
    r.document("d").insert(0, "hello")
    r.document("d").delete(0, 1)
    path = tmp_path / "u.bin"
    path.write_bytes(r.encode_update())
    result = _run("inspect", str(path), "--items")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clients"]["42"]["start"] == 0
    deleted = [list(rng) for rng in r.version().deleted.client_ranges(42)]
    assert report["deletes"]["42"] == deleted and len(deleted) == 1
    assert any(item["value"] == "ello" for item in report["items"])


def test_inspect_explains_invalid_bytes_without_a_traceback() -> None:
    result = _run("inspect", "-", stdin=b"\x01\x01\x01")
    assert result.returncode == 1
    assert b"InvalidUpdate" in result.stderr and b"Traceback" not in result.stderr


def test_missing_file_is_a_clear_error() -> None:
    result = _run("inspect", "/nonexistent/update.bin")
    assert result.returncode == 1
    assert b"No such file" in result.stderr and b"Traceback" not in result.stderr


def test_version_decode() -> None:
    r = Replica("a", client_id=9)
    r.document("d").insert(0, "abc")
    result = _run("version", "decode", r.version().token())
    assert result.returncode == 0
    assert json.loads(result.stdout)["clocks"] == {"9": r.version().clocks[9]}
    bad = _run("version", "decode", "%%%")
    assert bad.returncode == 2 and b"InvalidVersionToken" in bad.stderr  # bad usage


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert b"inspect" in result.stdout and b"version" in result.stdout and b"serve" in result.stdout


def test_serve_help_documents_every_limit_with_its_default() -> None:
    result = _run("serve", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for flag in (
        "--max-message-bytes",
        "--max-connections",
        "--max-rooms",
        "--idle-timeout",
        "--max-awareness-bytes",
        "--handshake-timeout",
        "--send-queue-bytes",
    ):
        assert flag in text
    assert "default: 1048576" in text  # 1 MiB messages


def test_serve_refuses_a_bad_setting_with_a_clear_message() -> None:
    result = _run("serve", "--port", "0", "--max-rooms", "0")
    assert result.returncode == 2  # a UsageError
    assert b"max_rooms must be at least 1" in result.stderr
    assert b"Traceback" not in result.stderr


def test_serve_explains_an_unreachable_postgresql_store_and_hides_the_password() -> None:
    result = _run("serve", "--port", "0", "--store", "postgresql://bob:hunter2@127.0.0.1:1/rooms")
    assert result.returncode == 1
    # psycopg's own retries are the hub's structured logs, quiet by default: one line remains
    assert b"error connecting" not in result.stderr, result.stderr
    assert b"cannot open the PostgreSQL store postgresql://bob:***@127.0.0.1:1/rooms" in (
        result.stderr
    )
    assert b"hunter2" not in result.stderr and b"Traceback" not in result.stderr


def test_serve_refuses_redis_without_a_shared_store() -> None:
    result = _run("serve", "--port", "0", "--redis", "redis://127.0.0.1:6379/0")
    assert result.returncode == 2  # a UsageError
    assert b"--redis connects hubs that share a PostgreSQL --store" in result.stderr


def test_bench_lists_the_benchmarks_and_refuses_an_unknown_one() -> None:
    result = _run("bench", "--help")
    assert result.returncode == 0
    for name in (b"strategies", b"partitions", b"hub_load", b"trace", b"report"):
        assert name in result.stdout
    result = _run("bench", "nonsense")
    assert result.returncode == 2 and b"invalid choice" in result.stderr


def test_help_loads_neither_the_engine_nor_the_client() -> None:
    """`crdtdoc --help` and the parser of every command build without pycrdt, websockets or the
    replica: they load when a command that needs them runs."""
    probe = (
        "import sys, crdtdoc.cli\n"
        "crdtdoc.cli.build_parser().format_help()\n"
        "heavy = ('pycrdt', 'websockets', 'crdtdoc.replica', 'crdtdoc.client.connection')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

"""`crdtdoc.serve_cli`: `crdtdoc serve` offers every `HubConfig` setting as an option with the
same default, and refuses (exit 2, one line, no traceback, no hub started) a bad setting or a
non-loopback address without a secret."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from crdtdoc.cli import build_parser
from crdtdoc.serve_cli import _is_loopback
from crdtdoc.server.config import HubConfig
from crdtdoc.tokens import SECRET_ENV

NOT_OPTIONS = {"secret"}  # read from --secret-file (or the environment), never given inline
CLI_ONLY = {"log_level", "secret_file", "run", "command"}


def test_the_options_are_the_hub_configs_fields_with_its_defaults() -> None:
    args = vars(build_parser().parse_args(["serve"]))
    fields = {f.name: f.default for f in dataclasses.fields(HubConfig)}
    assert set(args) - CLI_ONLY == set(fields) - NOT_OPTIONS
    for name, default in fields.items():
        if name not in NOT_OPTIONS:
            assert args[name] == default, name
    assert args["secret_file"] is None and args["log_level"] == "warning"


def test_each_option_reaches_its_field() -> None:
    args = build_parser().parse_args(
        ["serve", "--store", "rooms.db", "--max-rooms", "7", "--idle-timeout", "0", "--insecure"]
    )
    assert (args.db, args.max_rooms, args.idle_timeout, args.insecure) == ("rooms.db", 7, 0.0, True)
    horizon = build_parser().parse_args(["serve", "--history-horizon", "30d"]).history_horizon
    assert horizon == 30 * 86400


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("localhost", True), ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True)],
        *[("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("hub.example.com", False)],
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    return subprocess.run(
        [sys.executable, "-m", "crdtdoc.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "70000"], "bad setting: port must be from 0 to 65535"),
        (["--synchronous", "off"], "invalid choice: 'off'"),
        (["--send-timeout", "0"], "bad setting: send_timeout must be positive"),
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without a secret"),
        (["--history-horizon", "0"], "a duration must be positive"),
        (["--history-horizon", "0.5s"], "history_horizon must be at least 1 second"),
        (["--history-horizon", "inf"], "a duration must be positive and finite"),
        (["--history-horizon", "soon"], "not a duration: 'soon'"),
        (["--history-horizon", "7d", "--no-history"], "a history horizon needs history"),
    ],
)
def test_a_refused_setting_exits_2_with_one_line(args: list[str], said: str) -> None:
    result = _serve(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert said in lines[-1] and "Traceback" not in result.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:")  # argparse's own: usage, then why
    assert "listening" not in result.stdout

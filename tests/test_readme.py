"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.hubs import hub_in_thread

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "the README has a hub example and a replica example"
    for block in blocks:
        if "ws://127.0.0.1:8765" in block:  # runs against a real hub on a free port
            with hub_in_thread(tmp_path / "readme.db") as url:
                block = block.replace("ws://127.0.0.1:8765", url)
                exec(compile(block, str(README), "exec"), {})
        else:
            exec(compile(block, str(README), "exec"), {})


def test_readme_quick_start_is_the_ci_test_command() -> None:
    """CI runs the README's command as written, but for pytest under coverage."""
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    command = (
        "python -m pip install -e '.[test]' && npm ci --prefix tests/interop --no-audit --no-fund"
        " && python -m pytest"
    )
    wrapped = command.replace("python -m pytest", "python -m coverage run -m pytest")
    assert command in text and f"{wrapped}\n" in ci


def test_readme_mcp_configuration_names_a_real_command() -> None:
    """The ready-to-paste MCP configuration parses and its arguments are ones `crdtdoc mcp`
    accepts."""
    import json

    from crdtdoc.cli import build_parser

    (block,) = re.findall(r"```json\n(.*?)```", README.read_text(), re.S)
    server = json.loads(block)["mcpServers"]["crdtdoc"]
    assert server["command"] == "crdtdoc"
    args = build_parser().parse_args(server["args"])
    assert (args.hub, args.room, args.agent) == ("ws://127.0.0.1:8765", "project-x", "alice")


def test_readme_exit_code_table_and_mcp_tool_list_match_the_code() -> None:
    """Every exit code the command line gives has a row, and every row a code; every MCP tool
    is listed, and nothing listed is missing."""
    import asyncio

    from crdtdoc.agent_cli import EXIT_CODES
    from crdtdoc.mcp_server import build_server

    text = README.read_text()
    rows = {int(code) for code in re.findall(r"^\| (\d+) \| ", text, re.M)}
    assert rows == {0, 1, 130, 141} | {code for _, code in EXIT_CODES}
    section = text[text.index("## For MCP-capable agents") : text.index("Writes answer once")]
    listed = set(re.findall(r"`([a-z_]+)`", section)) - {"crdtdoc", "fence"}
    server = build_server("ws://127.0.0.1:9", "r", "alice", None)
    tools = {tool.name for tool in asyncio.run(server.list_tools())}
    assert listed == tools, (listed - tools, tools - listed)

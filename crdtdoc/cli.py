"""The `crdtdoc` command line.

`crdtdoc inspect FILE` shows what a Yjs update carries (or why it is invalid); `crdtdoc version
decode TOKEN` shows what a version token names. The hub (`crdtdoc serve`) arrives with the hub
issue.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import crdtdoc
from crdtdoc.errors import CrdtdocError
from crdtdoc.updates import CONTENT_NAMES, parse_update
from crdtdoc.versions import Version


def _inspect(args: argparse.Namespace) -> int:
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as f:
            data = f.read()
    parsed = parse_update(data, details=args.items)
    report: dict[str, object] = {
        "bytes": parsed.size,
        "clients": {
            str(c): {"start": s.start, "end": s.end, "skips": s.skips, "gc": s.gcs}
            for c, s in sorted(parsed.structs.items())
        },
        "references": {str(c): k for c, k in sorted(parsed.references.items())},
        "deletes": {
            str(c): parsed.delete_set.client_ranges(c) for c in parsed.delete_set.clients()
        },
    }
    if parsed.items is not None:
        report["items"] = [
            {
                "id": [i.client, i.clock],
                "length": i.length,
                "content": CONTENT_NAMES.get(i.content, i.content),
                "parent": i.parent,
                "key": i.parent_sub,
                "value": i.value if isinstance(i.value, (str, int, float)) else repr(i.value),
            }
            for i in parsed.items
        ]
    print(json.dumps(report, indent=2))
    return 0


def _version_decode(args: argparse.Namespace) -> int:
    version = Version.from_token(args.token)
    report = {
        "clocks": {str(c): k for c, k in sorted(version.clocks.items())},
        "deleted": {str(c): version.deleted.client_ranges(c) for c in version.deleted.clients()},
    }
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crdtdoc",
        description="Shared artifacts for many agents: Yjs-compatible CRDT replicas and tools.",
    )
    parser.add_argument("--version", action="version", version=f"crdtdoc {crdtdoc.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="show what a Yjs v1 update carries, or why it is invalid",
        description="Parse and validate a Yjs v1 update (a file, or - for stdin) and print its "
        "per-client clock ranges, referenced ids and delete set as JSON. Exit 1 if invalid.",
    )
    inspect.add_argument("file", help="update file, or - to read standard input")
    inspect.add_argument("--items", action="store_true", help="also list every struct")
    inspect.set_defaults(run=_inspect)

    version = commands.add_parser("version", help="work with version tokens")
    version_commands = version.add_subparsers(dest="version_command", metavar="ACTION")
    decode = version_commands.add_parser(
        "decode",
        help="show the clocks and deletions a version token names",
        description="Decode a version token (from Version.token()) and print it as JSON.",
    )
    decode.add_argument("token")
    decode.set_defaults(run=_version_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        result: int = run(args)
        return result
    except CrdtdocError as exc:
        print(f"crdtdoc: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"crdtdoc: {exc.strerror or exc}: {getattr(exc, 'filename', '')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

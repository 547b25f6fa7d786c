"""``coord-server``: the command that runs one coord node.

The node itself (serving ``protos/coord/v1`` on gRPC, with the Raft core, storage and
state machine behind it) arrives with the coord-server work. Until then this command
parses its arguments, explains what is missing and exits with status 2, so scripts that
call it fail loudly instead of silently doing nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_NOT_YET = (
    "coord-server: the server is not implemented yet; it arrives with the coord-server "
    "work (see README.md). Nothing was started."
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``coord-server``."""
    parser = argparse.ArgumentParser(
        prog="coord-server",
        description=(
            "Run one node of a coord cluster: a Raft-replicated key-value store with "
            "watches, leases, locks, elections and hash rings, served over gRPC. "
            "With no arguments it will run a one-node cluster with its data directory "
            "in the working folder. NOTE: the server arrives with the coord-server "
            "work; this build only prints this help."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run a node (not yet available)",
        description="Run a node. Not yet available: arrives with the coord-server work.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server``; returns the process exit status."""
    parser = build_parser()
    parser.parse_args(argv)
    print(_NOT_YET, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

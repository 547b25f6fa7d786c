"""``coordctl``: the command-line client of coord.

The commands (get, put, watch, lease, lock, elect, ring, member, status) arrive with the
coord-client work. Until then this command prints its usage, says what is missing and
exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_NOT_YET = (
    "coordctl: the client commands are not implemented yet; they arrive with the "
    "coord-client work (see README.md)."
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``coordctl``."""
    return argparse.ArgumentParser(
        prog="coordctl",
        description=(
            "Command-line client of coord: read and write keys, watch, manage leases, "
            "locks, elections, hash rings and cluster members. NOTE: the commands arrive "
            "with the coord-client work; this build only prints this help."
        ),
        epilog="Until then, any gRPC tool (e.g. grpcurl) can use protos/coord/v1 directly.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coordctl``; returns the process exit status."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_usage(sys.stderr)
    print(_NOT_YET, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

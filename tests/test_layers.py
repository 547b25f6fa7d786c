"""The import rules of docs/architecture.md, checked on the source so the picture cannot
rot: the Raft core does no I/O, the state machine knows nothing of gRPC, the transport or
the services, the client and the server do not import each other, and what they share
(coord_common) imports neither.

``KNOWN`` lists the imports that break a rule today, each to be removed (issue #20); it
is empty now. A new import that breaks a rule fails; so does an entry of ``KNOWN`` that
is no longer true, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RULES: dict[str, tuple[str, ...]] = {
    # package (as a path prefix) -> modules it must not import (prefix match)
    "coord_server/raft/": ("asyncio", "grpc", "socket", "threading", "subprocess", "os", "time",
                           "coord_server.storage", "coord_server.transport", "coord_server.node",
                           "coord_server.state", "coord_server.services", "coord_client"),
    "coord_server/state/": ("asyncio", "grpc", "coord_server.transport", "coord_server.services",
                            "coord_server.node", "coord_server.storage", "coord_client"),
    "coord_server/": ("coord_client",),
    "coord_client/": ("coord_server",),
    # what both share: the hash ring, the snapshot file format
    "coord_common/": ("coord_server", "coord_client", "grpc"),
}

KNOWN: set[tuple[str, str]] = set()


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def violations() -> set[tuple[str, str]]:
    found = set()
    for prefix, banned in RULES.items():
        for path in sorted((ROOT / prefix).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name in imports(path):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    found.add((rel, name))
    return found


def test_no_new_import_breaks_a_layer_rule() -> None:
    new = violations() - KNOWN
    assert not new, f"imports against docs/architecture.md: {sorted(new)}"


def test_the_known_exceptions_still_exist() -> None:
    gone = KNOWN - violations()
    assert not gone, f"no longer imported, remove from KNOWN: {sorted(gone)}"

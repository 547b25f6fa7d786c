"""The import rules of docs/architecture.md, checked on the source so the picture cannot
rot: the Raft core does no I/O, the state machine knows nothing of gRPC, the transport or
the services, the client and the server do not import each other, and what they share
(coord_common) imports neither. The services (services, etcd, http, auth) see their
member only through ``coord_server.member.Member``: never the Raft core, the storage,
the transport, or anything the face does not declare.

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


# ---------------------------------------------------------------------------- the face

SERVICE_PACKAGES = ("coord_server/services/", "coord_server/etcd/", "coord_server/http/", "coord_server/auth/")
"""What runs on a member through its ``Member`` face (coord_server/member.py) only."""

BEHIND_THE_FACE_MODULES = ("coord_server.node", "coord_server.storage", "coord_server.transport", "coord_server.raft.core")
BEHIND_THE_FACE_ATTRIBUTES = {"core", "storage", "transport"}
"""The node's parts a service must not reach for (the Raft core, the log, the peer links)."""

MEMBER_NAMES = ("node",)
"""How the services name the member they hold (``self.node``, ``node``, ``self.quota.node``...)."""


def _member_protocol_names() -> set[str]:
    from coord_server.member import Member

    names: set[str] = set()
    for cls in Member.__mro__:
        if cls.__name__ in {"Protocol", "Generic", "object"}:
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
    return names


def face_violations() -> list[str]:
    """Where a service reaches past the face: an import of the node's parts, one of their
    attributes, anything asked of the member that ``Member`` does not declare (a private
    attribute included), or ``getattr`` on the member or of a private name."""
    allowed = _member_protocol_names()
    found = []
    for prefix in SERVICE_PACKAGES:
        for path in sorted((ROOT / prefix).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name in imports(path):
                if any(name == b or name.startswith(b + ".") for b in BEHIND_THE_FACE_MODULES):
                    found.append(f"{rel}: imports {name}")
            tree = ast.parse(path.read_text(), rel)
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    owner = node.value
                    owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
                    if node.attr in BEHIND_THE_FACE_ATTRIBUTES and owner_name in MEMBER_NAMES:
                        found.append(f"{rel}:{node.lineno}: {owner_name}.{node.attr}")
                    elif owner_name in MEMBER_NAMES and node.attr not in allowed:
                        found.append(f"{rel}:{node.lineno}: {owner_name}.{node.attr} is not part of Member")
                elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr"):
                    target = node.args[0] if node.args else None
                    target_name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                    literal = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None
                    if target_name in MEMBER_NAMES or (isinstance(literal, str) and literal.startswith("_")):
                        found.append(f"{rel}:{node.lineno}: {node.func.id}({target_name}, {literal!r})")  # type: ignore[attr-defined]
    return found


def test_services_see_the_member_only_through_its_face() -> None:
    found = face_violations()
    assert not found, "services reaching past coord_server/member.py's Member:\n" + "\n".join(found)


def test_the_face_check_catches_a_service_reaching_past_it(tmp_path: Path) -> None:
    """The check above is not vacuous: each way of reaching past the face is reported."""
    planted = {
        "core.py": "def f(node):\n    return node.core.term\n",
        "storage.py": "class S:\n    def f(self):\n        return self.node.storage.snapshot()\n",
        "private.py": "def f(node):\n    return getattr(node, '_stopping')\n",
        "private_attr.py": "class S:\n    def f(self):\n        return self.node._stopping\n",
        "transport.py": "async def f(node):\n    await node.transport.forward(1, 2, b'', 3)\n",
        "undeclared.py": "def f(node):\n    return node.proposals\n",
        "imports.py": "from coord_server.node import Node\n",
    }
    package = tmp_path / "coord_server" / "services"
    package.mkdir(parents=True)
    for name, text in planted.items():
        (package / name).write_text(text)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = face_violations()
    finally:
        ROOT = saved
    for name in planted:
        assert any(f"coord_server/services/{name}" in line for line in found), (name, found)

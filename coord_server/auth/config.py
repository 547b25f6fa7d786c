"""The auth file: users with bearer tokens, roles with permissions (etcd's RBAC, smaller).

TOML (or JSON, chosen by the ``.json`` suffix) with two tables::

    [roles.app]
    keys = [{prefix = "app/", access = "readwrite"}, {prefix = "shared/", access = "read"}]
    locks = [{prefix = "app/", access = "readwrite"}]
    elections = [{prefix = "", access = "read"}]
    rings = []

    [roles.ops]
    admin = true                 # every operation, including member changes

    [users.alice]
    token_sha256 = "<hex SHA-256 of the token>"   # or token = "..." (plain, discouraged)
    roles = ["app"]

Why hashes: the file then holds nothing a reader of it could present as a token. A token
is matched by hashing what the client sends and looking the digest up, so no comparison
of secrets happens at all.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from coord_server.state.permissions import ACCESS_LEVELS, KINDS, Permission, Principal, Role


class AuthFileError(ValueError):
    """The auth file is unreadable or malformed; the message says where."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class AuthConfig:
    """Who may connect (token digests) and as whom."""

    users_by_digest: dict[str, Principal]
    roles: dict[str, Role] = field(default_factory=dict)
    """Every role of the file, those no user has included (for the bootstrap)."""

    def authenticate(self, token: str) -> Principal | None:
        return self.users_by_digest.get(token_digest(token))


def load_auth_file(path: str) -> AuthConfig:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise AuthFileError(f"cannot read auth file {path}: {err.strerror}") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise AuthFileError(f"auth file {path} is not valid {'JSON' if path.endswith('.json') else 'TOML'}: {err}") from None
    return parse_auth(data, path)


def parse_auth(data: Any, where: str = "auth file") -> AuthConfig:
    if not isinstance(data, dict):
        raise AuthFileError(f"{where}: expected a table with 'users' and 'roles'")
    unknown = set(data) - {"users", "roles"}
    if unknown:
        raise AuthFileError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; expected users and roles")
    roles = {name: _role(name, spec, where) for name, spec in _table(data.get("roles", {}), "roles", where).items()}
    users: dict[str, Principal] = {}
    for name, spec in _table(data.get("users", {}), "users", where).items():
        spec = _table(spec, f"users.{name}", where)
        unknown = set(spec) - {"token", "token_sha256", "roles"}
        if unknown:
            raise AuthFileError(f"{where}: users.{name} has unknown field(s) {', '.join(sorted(unknown))}")
        digest = _digest(name, spec, where)
        role_names = spec.get("roles", [])
        if not isinstance(role_names, list) or not all(isinstance(r, str) for r in role_names):
            raise AuthFileError(f"{where}: users.{name}.roles must be a list of role names")
        missing = [r for r in role_names if r not in roles]
        if missing:
            raise AuthFileError(f"{where}: users.{name} names undefined role(s) {', '.join(missing)}")
        if digest in users:
            raise AuthFileError(f"{where}: users {users[digest].name} and {name} have the same token")
        users[digest] = Principal.of(name, tuple(roles[r] for r in role_names))
    if not users:
        raise AuthFileError(f"{where}: no users; with auth enabled nobody could connect")
    return AuthConfig(users, roles)


def _table(value: Any, label: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AuthFileError(f"{where}: {label} must be a table")
    return value


def _digest(name: str, spec: dict[str, Any], where: str) -> str:
    if ("token" in spec) == ("token_sha256" in spec):
        raise AuthFileError(f"{where}: users.{name} needs exactly one of token_sha256 or token")
    if "token" in spec:
        token = spec["token"]
        if not isinstance(token, str) or len(token) < 8:
            raise AuthFileError(f"{where}: users.{name}.token must be a string of at least 8 characters")
        return token_digest(token)
    digest = spec["token_sha256"]
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise AuthFileError(f"{where}: users.{name}.token_sha256 must be 64 hex digits (sha256sum of the token)")
    return digest.lower()


def _role(name: str, spec: Any, where: str) -> Role:
    spec = _table(spec, f"roles.{name}", where)
    unknown = set(spec) - {"admin", *KINDS}
    if unknown:
        raise AuthFileError(
            f"{where}: roles.{name} has unknown field(s) {', '.join(sorted(unknown))}; "
            f"expected admin, {', '.join(KINDS)}"
        )
    admin = spec.get("admin", False)
    if not isinstance(admin, bool):
        raise AuthFileError(f"{where}: roles.{name}.admin must be true or false")
    permissions: list[Permission] = []
    for kind in KINDS:
        entries = spec.get(kind, [])
        if not isinstance(entries, list):
            raise AuthFileError(f"{where}: roles.{name}.{kind} must be a list of {{prefix, access}} tables")
        for i, entry in enumerate(entries):
            label = f"roles.{name}.{kind}[{i}]"
            if not isinstance(entry, dict) or set(entry) != {"prefix", "access"}:
                raise AuthFileError(f"{where}: {label} must be a table with exactly prefix and access")
            prefix, access = entry["prefix"], entry["access"]
            if not isinstance(prefix, str):
                raise AuthFileError(f"{where}: {label}.prefix must be a string")
            if access not in ACCESS_LEVELS:
                raise AuthFileError(f"{where}: {label}.access must be read or readwrite, got {access!r}")
            permissions.append(Permission(kind, prefix.encode(), access == "readwrite"))
    return Role(name, admin, tuple(permissions))

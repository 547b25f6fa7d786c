"""``coordctl user``, ``role`` and ``auth``: users, roles and permissions at run time, in
etcdctl's shape.

    coordctl role add app
    coordctl role grant app readwrite app/                 # keys (the default kind)
    coordctl role grant app readwrite jobs/ --kind locks
    coordctl role add root --admin
    coordctl user add billing --password "$PASSWORD"       # or typed at a prompt / from stdin
    coordctl user grant-role billing app
    coordctl auth enable                                   # refused unless an admin user exists
    coordctl auth login billing                            # prints a token: COORD_TOKEN=...

Every command needs an admin's token while auth is on (``auth status``: any user's;
``auth login``: none). See docs/security.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .aio import AsyncClient
from .auth import ACCESS, KINDS

Leaf = Callable[..., argparse.ArgumentParser]


def _password(args: argparse.Namespace, prompt: str) -> str:
    """--password, else a prompt on a terminal, else the first line of stdin."""
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")


def _done(out: TextIO, args: argparse.Namespace, text: str) -> int:
    out.write('{"ok": true}\n' if args.json else text + "\n")
    return 0


def _lines(out: TextIO, args: argparse.Namespace, key: str, names: list[str]) -> int:
    if args.json:
        out.write(json.dumps({key: names}) + "\n")
    else:
        out.write("".join(f"{n}\n" for n in names))
    return 0


# ----------------------------------------------------------------------------- auth


async def cmd_auth_enable(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.enable()
    return _done(out, args, "Authentication Enabled")


async def cmd_auth_disable(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.disable()
    return _done(out, args, "Authentication Disabled")


async def cmd_auth_status(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    status = await client.auth.status()
    if args.json:
        out.write(json.dumps({"enabled": status.enabled, "auth_revision": status.revision}) + "\n")
    else:
        out.write(f"Authentication Status: {'true' if status.enabled else 'false'}\nAuthRevision: {status.revision}\n")
    return 0


async def cmd_auth_login(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    token = await client.auth.authenticate(args.name, _password(args, f"Password of {args.name}: "))
    out.write(token + "\n")
    return 0


# ----------------------------------------------------------------------------- users


async def cmd_user_add(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    password = None if args.no_password else _password(args, f"Password of {args.name}: ")
    await client.auth.user_add(args.name, password)
    return _done(out, args, f"User {args.name} created")


async def cmd_user_delete(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.user_delete(args.name)
    return _done(out, args, f"User {args.name} deleted")


async def cmd_user_list(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    return _lines(out, args, "users", await client.auth.user_list())


async def cmd_user_get(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    user = await client.auth.user_get(args.name)
    if args.json:
        out.write(json.dumps({"name": user.name, "roles": list(user.roles), "has_password": user.has_password,
                              "tokens": user.tokens}) + "\n")
    else:
        out.write(f"User: {user.name}\nRoles: {' '.join(user.roles)}\n")
    return 0


async def cmd_user_passwd(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.user_change_password(args.name, _password(args, f"New password of {args.name}: "))
    return _done(out, args, "Password updated")


async def cmd_user_grant_role(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.user_grant_role(args.name, args.role)
    return _done(out, args, f"Role {args.role} is granted to user {args.name}")


async def cmd_user_revoke_role(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.user_revoke_role(args.name, args.role)
    return _done(out, args, f"Role {args.role} is revoked from user {args.name}")


# ----------------------------------------------------------------------------- roles


async def cmd_role_add(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.role_add(args.name, admin=args.admin)
    return _done(out, args, f"Role {args.name} created")


async def cmd_role_delete(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.role_delete(args.name)
    return _done(out, args, f"Role {args.name} deleted")


async def cmd_role_list(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    return _lines(out, args, "roles", await client.auth.role_list())


async def cmd_role_get(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    role = await client.auth.role_get(args.name)
    if args.json:
        perms = [{"kind": p.kind, "prefix": p.prefix.decode(errors="replace"), "access": p.access}
                 for p in role.permissions]
        out.write(json.dumps({"name": role.name, "admin": role.admin, "permissions": perms}) + "\n")
        return 0
    out.write(f"Role {role.name}{' (admin: every operation)' if role.admin else ''}\n")
    for p in role.permissions:
        out.write(f"  {p.access:<9} {p.kind:<9} prefix {p.prefix.decode(errors='replace')!r}\n")
    return 0


async def cmd_role_grant(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.role_grant_permission(args.name, args.kind, args.prefix, args.access)
    return _done(out, args, f"Role {args.name} updated")


async def cmd_role_revoke(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.auth.role_revoke_permission(args.name, args.kind, args.prefix)
    return _done(out, args, f"Permission of role {args.name} on {args.kind} prefix {args.prefix!r} revoked")


# ----------------------------------------------------------------------------- parser


def add_auth_commands(sub: Any, leaf: Leaf) -> None:
    """Add ``user``, ``role`` and ``auth`` to coordctl's subcommands ``sub``; ``leaf`` is
    coordctl's helper that adds one command with the common options."""
    auth = sub.add_parser("auth", help="turn authentication on or off, show it, get a token")
    asub = auth.add_subparsers(dest="auth_command", metavar="SUBCOMMAND", required=True)
    leaf(asub, "enable", cmd_auth_enable, "turn authentication on (refused unless a user has an admin role)")
    leaf(asub, "disable", cmd_auth_disable, "turn authentication off")
    leaf(asub, "status", cmd_auth_status, "whether authentication is on")
    p = leaf(asub, "login", cmd_auth_login, "check a user's password and print a new token for it")
    p.add_argument("name")
    p.add_argument("--password", help="default: prompt, or the first line of stdin")

    user = sub.add_parser("user", help="users: add, delete, list, get, passwd, grant-role, revoke-role")
    usub = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    p = leaf(usub, "add", cmd_user_add, "create a user")
    p.add_argument("name")
    p.add_argument("--password", help="default: prompt, or the first line of stdin")
    p.add_argument("--no-password", action="store_true", help="a user that cannot log in")
    leaf(usub, "delete", cmd_user_delete, "delete a user and its tokens").add_argument("name")
    leaf(usub, "list", cmd_user_list, "list users")
    leaf(usub, "get", cmd_user_get, "show a user's roles").add_argument("name")
    p = leaf(usub, "passwd", cmd_user_passwd, "change a user's password (its tokens stop working)")
    p.add_argument("name")
    p.add_argument("--password", help="default: prompt, or the first line of stdin")
    for name, handler, help in (("grant-role", cmd_user_grant_role, "give a user a role"),
                                ("revoke-role", cmd_user_revoke_role, "take a role from a user")):
        p = leaf(usub, name, handler, help)
        p.add_argument("name")
        p.add_argument("role")

    role = sub.add_parser("role", help="roles: add, delete, list, get, grant, revoke")
    rsub = role.add_subparsers(dest="role_command", metavar="SUBCOMMAND", required=True)
    p = leaf(rsub, "add", cmd_role_add, "create a role")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="an admin role: every operation")
    leaf(rsub, "delete", cmd_role_delete, "delete a role").add_argument("name")
    leaf(rsub, "list", cmd_role_list, "list roles")
    leaf(rsub, "get", cmd_role_get, "show a role's permissions").add_argument("name")
    p = leaf(rsub, "grant", cmd_role_grant, "let a role read, or read and write, a prefix")
    p.add_argument("name")
    p.add_argument("access", choices=list(ACCESS))
    p.add_argument("prefix", help="key (or name) prefix; empty for everything")
    p.add_argument("--kind", choices=list(KINDS), default="keys", help="what the prefix names (default: keys)")
    p = leaf(rsub, "revoke", cmd_role_revoke, "remove a role's permission on a prefix")
    p.add_argument("name")
    p.add_argument("prefix")
    p.add_argument("--kind", choices=list(KINDS), default="keys", help="what the prefix names (default: keys)")

"""coordctl commands about the cluster itself that etcdctl also has: ``move-leader``
(leadership transfer) and ``version`` (this client's and every member's version)."""

from __future__ import annotations

import argparse
from importlib import metadata
from typing import Any, TextIO

from .aio import AsyncClient
from .types import Member


def client_version() -> str:
    """The installed coord distribution's version ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version("coord")
    except metadata.PackageNotFoundError:
        return "unknown"


def find_member(members: list[Member], text: str) -> Member:
    """The member named ``text``: its name, or its ID in hex (as `member list` shows it)."""
    from .cli import UsageError, parse_member_id

    for m in members:
        if m.name and m.name == text:
            return m
    try:
        wanted = parse_member_id(text)
    except UsageError:
        wanted = -1
    for m in members:
        if m.id == wanted:
            return m
    known = ", ".join(f"{m.name or '-'} ({m.id:x})" for m in members)
    raise UsageError(f"no member {text!r}; the members are {known}")


async def cmd_move_leader(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    from .cli import EXIT_FAILED, EXIT_OK, emit

    members = await client.members(linearizable=True)
    target = find_member(members, args.member)
    if target.is_learner:
        from .cli import UsageError

        raise UsageError(f"member {target.name or format(target.id, 'x')} is a learner; promote it first")
    leader = await client.transfer_leadership(target.id)
    moved = leader == target.id
    if args.json:
        emit(out, {"leader": f"{leader:x}", "name": target.name if moved else None, "moved": moved})
    elif moved:
        out.write(f"leadership moved to {target.name or '-'} ({target.id:x})\n")
    else:
        out.write(f"leadership is with {leader:x}, not {target.id:x}\n")
    return EXIT_OK if moved else EXIT_FAILED


async def cmd_version(client: AsyncClient, args: argparse.Namespace, out: TextIO) -> int:
    from .cli import EXIT_FAILED, EXIT_OK, emit

    rows = sorted(await client.cluster_status(), key=lambda r: (r.name or "\uffff", r.endpoint))
    members = [{"name": r.name or None, "endpoint": r.endpoint,
                "version": r.status.version if r.status is not None else None,
                "error": r.error or None} for r in rows]
    if args.json:
        emit(out, {"client": client_version(), "members": members})
    else:
        out.write(f"coordctl {client_version()}\n")
        for m in members:
            out.write(f"{m['name'] or '-'} {m['endpoint']} {m['version'] or 'unreachable'}\n")
    return EXIT_OK if all(r.status is not None for r in rows) else EXIT_FAILED


def add_commands(sub: Any, leaf: Any) -> None:
    """Add ``move-leader`` and ``version`` to coordctl's subcommands."""
    p = leaf(sub, "move-leader", cmd_move_leader,
             "hand the Raft leadership to MEMBER (a name or hex ID from `member list`)")
    p.add_argument("member", help="the member to lead: its name or hex ID")
    leaf(sub, "version", cmd_version, "the version of coordctl and of every member's coord-server")

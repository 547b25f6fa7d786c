"""coordctl's views of who holds what: ``lock inspect NAME`` (holders with their fencing
tokens and leases, then the queue in order) and ``elect --leader NAME`` (the leader, its
value, token and lease, then every campaigner in queue order)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .aio import AsyncClient
from .types import LockInfo


def lock_info_json(info: LockInfo) -> dict[str, Any]:
    return {
        "name": info.name, "permits": info.permits,
        "holders": [{"token": h.token, "lease": h.lease, "owner": h.owner, "revision": h.revision}
                    for h in info.holders],
        "waiters": [{"lease": w.lease, "owner": w.owner, "revision": w.revision} for w in info.waiters],
    }


async def inspect_lock(client: AsyncClient, name: str, args: argparse.Namespace, out: TextIO) -> int:
    from .cli import EXIT_OK, emit, table

    info = await client.lock_info(name)
    if args.json:
        emit(out, lock_info_json(info))
        return EXIT_OK
    if not info.holders and not info.waiters:
        out.write(f"lock {name}: free\n")
        return EXIT_OK
    out.write(f"lock {name}: {len(info.holders)} of {info.permits} held, {len(info.waiters)} waiting\n")
    rows = [("STATE", "TOKEN", "LEASE", "OWNER", "SINCE REVISION")]
    rows += [("holds", str(h.token), str(h.lease), h.owner or "-", str(h.revision)) for h in info.holders]
    rows += [(f"waits #{i}", "-", str(w.lease), w.owner or "-", str(w.revision))
             for i, w in enumerate(info.waiters, 1)]
    out.write(table(rows) + "\n")
    return EXIT_OK


async def show_leader(client: AsyncClient, name: str, args: argparse.Namespace, out: TextIO) -> int:
    from .cli import EXIT_OK, _bytes_field, emit, leader_json, show, table

    leader = await client.leader(name)
    candidates = await client.candidates(name)
    if args.json:
        listed = []
        for c in candidates:
            item: dict[str, Any] = {}
            _bytes_field(item, "value", c.value)
            item.update(lease=c.lease, revision=c.revision, token=c.token)
            listed.append(item)
        emit(out, {**leader_json(leader, name), "candidates": listed})
        return EXIT_OK
    if leader is None:
        out.write(f"election {name}: no leader\n")
    else:
        out.write(f"election {name}: leader {show(args, leader.value)} (token {leader.token}, lease {leader.lease}, "
                  f"since revision {leader.revision})\n")
    if candidates:
        rows = [("STATE", "VALUE", "LEASE", "TOKEN", "SINCE REVISION")]
        rows += [("leads" if i == 0 and c.token else f"waits #{i if candidates[0].token else i + 1}",
                  show(args, c.value), str(c.lease), str(c.token) if c.token else "-", str(c.revision))
                 for i, c in enumerate(candidates)]
        out.write(table(rows) + "\n")
    return EXIT_OK

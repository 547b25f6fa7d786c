"""The disk write of a Ready into a MemoryStorage, as every Raft test driver does it.

The order is the Ready contract's (coord_server/raft/core.py): the snapshot first (it
replaces what the log held before it), then the new entries, then the hard state, whose
commit index may point into those entries. The Simulator (which may tear this write at a
crash), the Network of tests/raft and the scripted regressions all persist through here.
"""

from __future__ import annotations

from coord_server.raft import MemoryStorage, Ready


def persist(storage: MemoryStorage, rd: Ready) -> None:
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)

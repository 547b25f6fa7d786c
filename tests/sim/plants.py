"""Bugs planted on purpose, one per trick of node.py, to show that the real-node simulator
(realnode.py) catches each: a simulator that passes with them would prove nothing.

- ``ack_before_fsync``: the storage skips the fsync a Ready asked for, so a member
  acknowledges entries (and votes) that a crash then loses (the risk of saving inline and
  of sending appends while the leader's own fsync runs).
- ``ApplyOutOfOrder``: the Ready loop applies a Ready's committed entries newest first (the
  risk of applying while the disk writes).
- ``swallow_failed_fsync``: a failed fsync is reported as done and the member goes on (what
  PostgreSQL did before fsyncgate); the writes it lost vanish at its next crash.
"""

from __future__ import annotations

from typing import Any

from coord_server.node import Node
from coord_server.storage import DiskStorage


def ack_before_fsync(storage: DiskStorage) -> None:
    save_async = storage.save_async

    async def unsynced(hard_state: Any, entries: Any, snapshot: Any = None, *, sync: bool = True) -> None:
        await save_async(hard_state, entries, snapshot, sync=False)

    storage.save_async = unsynced  # type: ignore[method-assign]


class ApplyOutOfOrder(Node):
    def _apply(self, entries: list[Any]) -> None:
        super()._apply(entries[::-1])


def swallow_failed_fsync(storage: DiskStorage) -> None:
    """The disk under ``storage`` reports a failed fsync as a success (fsyncgate: a retried
    fsync returns 0 though the pages it failed to write were dropped)."""
    io = storage._io
    io.disk.swallow_fsync_errors = True  # type: ignore[attr-defined]

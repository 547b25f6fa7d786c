"""Taking a snapshot without stopping the member.

Why: serialising the whole state at once held the event loop for about 2.5 s per
million keys (and its bytes doubled the memory): past ~150,000 keys that is longer than
the election timeout, so every snapshot of a leader cost an election. Here the state is
captured at the snapshot's index in O(keys) pointer copies (state/snapshot.py's image:
records are immutable, histories only grow), then encoded a chunk of keys at a time on
the loop, each chunk written to the file on the storage's snapshot thread while the loop
serves heartbeats, votes, reads and applies the next entries.

Rule 1: between two chunks anything may run; the image stays the state at ``index``
        unless a compaction drops records it still needs: then the snapshot is
        abandoned (SnapshotAbandoned) and retried after the next interval.
Rule 2: a storage without ``begin_snapshot`` (the in-memory one of simulations) gets the
        bytes at once, as before.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from coord_server.state import StateMachine
from coord_server.state.snapshot import ImageOutdated

log = logging.getLogger("coord.snapshot")


class SnapshotAbandoned(Exception):
    """The state changed under the image in a way it cannot survive (Rule 1)."""


async def write_snapshot(state: StateMachine, storage: Any, index: int, conf_state: Any) -> Any:
    """Write the snapshot of ``state`` (applied up to ``index``) to ``storage``; the
    Snapshot to record with ``record_snapshot_async``. Call at the point where ``state``
    is at ``index``: the image is taken before the first await."""
    image = state.image()
    begin = getattr(storage, "begin_snapshot", None)
    if begin is None:
        return await storage.write_snapshot_async(index, conf_state, image.encode())
    started = time.monotonic()
    writer = begin(index, conf_state)
    io = storage.snapshot_io
    try:
        await io(functools.partial(writer.write, image.head))
        chunks = image.chunks()
        while True:
            try:
                chunk = next(chunks)  # one chunk's encoding, on the loop
            except StopIteration:
                break
            await io(functools.partial(writer.write, chunk))
        snapshot = await io(writer.finish)
        log.info("snapshot at index %d: %d keys in %.2f s", index, image.key_count, time.monotonic() - started)
        return snapshot
    except ImageOutdated as err:
        storage.end_snapshot(writer)
        writer.abort()
        raise SnapshotAbandoned(str(err)) from None
    except BaseException:
        # Removing the temporary file is quick, and done here rather than on the snapshot
        # thread: when the node is stopping (cancelled), that thread may be gone.
        storage.end_snapshot(writer)
        writer.abort()
        raise

"""Snapshot files: ``snap/<term:016x>-<index:016x>.snap``, one per snapshot (format in
``records.py``).

Rule 1: a snapshot file is written before the WAL record that names it (temp file, fsync,
        rename, directory fsync). The WAL decides which snapshot is current: a file newer
        than the WAL's snapshot is the leftover of a crash between the two writes and is
        deleted; the current one must exist and verify, or recovery fails.
Rule 2: the newest ``keep`` snapshots are kept (the current one and older ones, for an
        operator's recovery); older ones and leftover temporary files are deleted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection

from ..raft.messages import Snapshot, SnapshotMeta
from .errors import StorageCorruptError
from .files import TMP_SUFFIX, FileIO, write_file_atomically
from .records import FormatError, decode_snapshot_file, encode_snapshot_file

log = logging.getLogger("coord.storage")

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"{meta.term:016x}-{meta.index:016x}.snap"


class SnapshotStore:
    def __init__(self, io: FileIO, snap_dir: str, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep_snapshots must be at least 1, not {keep}")
        self.io = io
        self.dir = snap_dir
        self.keep = keep

    def write(self, meta: SnapshotMeta, data: bytes) -> str:
        """Write the snapshot file durably (Rule 1); returns its path."""
        return write_file_atomically(self.io, self.dir, snapshot_name(meta), encode_snapshot_file(meta, data))

    def load(self, meta: SnapshotMeta) -> Snapshot:
        """Read and verify the snapshot the WAL names."""
        path = os.path.join(self.dir, snapshot_name(meta))
        try:
            with open(path, "rb") as f:
                buf = f.read()
        except FileNotFoundError:
            raise StorageCorruptError(
                path, None, f"the WAL names snapshot {meta.index} (term {meta.term}) but its file is missing"
            ) from None
        try:
            found, data = decode_snapshot_file(buf)
        except FormatError as e:
            raise StorageCorruptError(path, 0, f"snapshot does not verify: {e}") from None
        if found != meta:
            raise StorageCorruptError(path, 0, f"snapshot file holds {found}, the WAL names {meta}")
        return Snapshot(meta=meta, data=data)

    def files(self) -> list[tuple[int, int, str]]:
        """(index, term, path) of every snapshot file, oldest first."""
        out = []
        for name in os.listdir(self.dir):
            m = _NAME.match(name)
            if m:
                out.append((int(m.group(2), 16), int(m.group(1), 16), os.path.join(self.dir, name)))
        out.sort()
        return out

    def clean(self, current: SnapshotMeta, spare: Collection[str] = ()) -> list[str]:
        """Delete leftovers and all but the newest ``keep`` snapshots up to ``current``
        (Rule 2). Failures are logged, not raised: nothing depends on the deletion.
        ``spare`` names files being written in the background right now (and their
        temporary files): they are not leftovers yet."""
        spared = set(spare) | {name + TMP_SUFFIX for name in spare}
        doomed = [os.path.join(self.dir, n) for n in os.listdir(self.dir) if n.endswith(TMP_SUFFIX) and n not in spared]
        kept = 0
        for index, term, path in reversed(self.files()):
            if os.path.basename(path) in spared:
                continue
            if (index, term) == (current.index, current.term):
                kept += 1
            elif index >= current.index:
                log.warning("deleting snapshot %s: newer than the WAL's (a crash before it was recorded)", path)
                doomed.append(path)
            elif kept < self.keep:
                kept += 1
            else:
                doomed.append(path)
        removed = []
        try:
            for path in doomed:
                self.io.unlink(path)
                removed.append(path)
            if removed:
                self.io.fsync_dir(self.dir)
        except OSError as e:
            log.warning("could not delete old snapshot files (will retry): %s", e)
        return removed

    def disk_bytes(self) -> int:
        total = 0
        for _, _, path in self.files():
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        return total

"""Errors of the durable storage. Each names the directory or file (and offset) at fault and
says what the operator can do.

None of these derive from ``coord_server.raft.StorageError``: that family is for reads
outside the log, which the core handles; these mean the node must stop.
"""

from __future__ import annotations


class DiskStorageError(Exception):
    """Base of every error the durable storage raises."""


class StorageCorruptError(DiskStorageError):
    """The data on disk is damaged in a way that is not a torn tail (a bad checksum before
    the end, a missing segment, a snapshot that does not verify, a gap in the indexes).

    Nothing was changed on disk: inspect or restore the directory (or remove the member
    and add it back so it receives a snapshot from the leader).
    """

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        where = path if offset is None else f"{path} at offset {offset}"
        super().__init__(f"{where}: {reason}; the data directory was left untouched")
        self.path = path
        self.offset = offset
        self.reason = reason


class StorageWriteError(DiskStorageError):
    """Writing or syncing failed (full disk, I/O error). Nothing of the failed call was
    acknowledged, and the storage refuses every further write: after a failed fsync the
    kernel may have dropped the dirty pages, so retrying could acknowledge data that is not
    on disk. Stop the node, fix the disk, restart (recovery cuts what was half written).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class StorageLockedError(DiskStorageError):
    """Another process (or another ``DiskStorage`` in this one) has the data directory open."""

    def __init__(self, path: str, holder_pid: int | None) -> None:
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(
            f"data directory {path} is locked by {holder}: two nodes must never share a "
            f"data directory; stop the other one or choose another directory"
        )
        self.path = path
        self.holder_pid = holder_pid


class StorageFormatError(DiskStorageError):
    """The directory was written in a format this build does not read (a newer coord, or
    not a coord data directory at all)."""


class ClusterIdMismatchError(DiskStorageError):
    """The directory belongs to another cluster: refusing to mix two clusters' logs."""

    def __init__(self, path: str, found: int, expected: int) -> None:
        super().__init__(
            f"data directory {path} belongs to cluster {found:#x}, not {expected:#x}: "
            f"point the node at its own directory, or remove this one to join afresh"
        )
        self.path = path
        self.found = found
        self.expected = expected

"""The snapshot file format, shared by ``coordctl snapshot save`` (which writes it) and
``coord-server restore`` (which reads it): the snapshot bytes exactly as
``Maintenance.Snapshot`` streams them (a serialized ``coord.raft.v1.StateSnapshot``)
followed by the 32-byte SHA-256 digest of those bytes. The digest travels in the file so
that a truncated, damaged or foreign file is refused with a clear message instead of
seeding a cluster with half a state.
"""

from __future__ import annotations

import hashlib

__all__ = ["DIGEST_BYTES", "InvalidSnapshotFile", "file_digest", "read_snapshot_file"]

DIGEST_BYTES = 32
"""Length of the SHA-256 digest that ends a snapshot file."""


class InvalidSnapshotFile(Exception):
    """A snapshot file is missing, unreadable, truncated or corrupt; the message names
    the file and what is wrong."""


def file_digest(data: bytes) -> bytes:
    """The digest that ends the file holding ``data``."""
    return hashlib.sha256(data).digest()


def read_snapshot_file(path: str) -> bytes:
    """The snapshot bytes of a snapshot file, after checking its digest;
    InvalidSnapshotFile when the file is unreadable, truncated or corrupt."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as err:
        raise InvalidSnapshotFile(f"cannot read snapshot file {path}: {err.strerror}") from None
    if len(content) <= DIGEST_BYTES:
        raise InvalidSnapshotFile(
            f"{path} is not a coord snapshot file: it holds {len(content)} bytes, "
            f"less than a snapshot and its {DIGEST_BYTES}-byte checksum"
        )
    data, digest = content[:-DIGEST_BYTES], content[-DIGEST_BYTES:]
    if file_digest(data) != digest:
        raise InvalidSnapshotFile(
            f"{path} is corrupt or not a coord snapshot file: its SHA-256 checksum does not match "
            "its contents (truncated or changed since it was saved?)"
        )
    return data

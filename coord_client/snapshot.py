"""Backups: download a member's state snapshot to a file, and read such a file back.

The file (what ``coordctl snapshot save`` writes and ``coord-server restore`` reads) is
defined in ``coord_common.snapshot_file``: the snapshot bytes exactly as
``Maintenance.Snapshot`` streams them, then their 32-byte SHA-256 digest.

Rule 1: nothing lands at the destination path unless the whole stream arrived and its
        digest matched; the bytes go to ``PATH.part`` first, are fsynced and renamed.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import grpc

from coord.v1 import maintenance_pb2, maintenance_pb2_grpc
from coord_common import snapshot_file
from coord_common.snapshot_file import DIGEST_BYTES

from . import errors
from .aio import AsyncClient

__all__ = ["DIGEST_BYTES", "SnapshotFileError", "SnapshotInfo", "read_snapshot_file", "save_snapshot"]


class SnapshotFileError(errors.CoordError, snapshot_file.InvalidSnapshotFile):
    """A snapshot file is missing, unreadable, truncated or corrupt; or a download was
    incomplete. The message names the file and what is wrong."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What a saved snapshot covers."""

    path: str
    endpoint: str
    """The member that sent it."""
    size: int
    """Snapshot bytes, without the trailing digest."""
    applied_index: int
    revision: int
    sha256: str
    cluster_id: int
    member_id: int
    took: float
    """Seconds from the request to the renamed file."""


async def save_snapshot(
    client: AsyncClient,
    path: str,
    *,
    endpoint: str | None = None,
    linearizable: bool = True,
    timeout: float | None = None,
) -> SnapshotInfo:
    """Download a snapshot into ``path`` from ``endpoint`` (default: the client's
    endpoints, in order, until one answers). ``linearizable`` makes the member include
    every write committed before the call. Raises SnapshotFileError when the stream was
    incomplete or its checksum did not match, the CoordError of the last member tried
    when none could send one, OSError when the file cannot be written."""
    transport = client._transport
    targets = [endpoint] if endpoint else list(client.endpoints)
    last: errors.CoordError | None = None
    for address in targets:
        try:
            return await _download(client, address, path, linearizable, timeout or transport.timeout)
        except (errors.Unavailable, errors.DeadlineExceeded) as err:
            last = err
    assert last is not None
    raise last


async def _download(
    client: AsyncClient, address: str, path: str, linearizable: bool, timeout: float
) -> SnapshotInfo:
    start = time.monotonic()
    stub = maintenance_pb2_grpc.MaintenanceStub(client._transport.stubs(address).channel)
    request = maintenance_pb2.MaintenanceSnapshotRequest(linearizable=linearizable)
    partial = path + ".part"
    hasher = hashlib.sha256()
    received = 0
    last: maintenance_pb2.MaintenanceSnapshotResponse | None = None
    try:
        with open(partial, "wb") as f:
            try:
                async for message in stub.Snapshot(request, timeout=timeout):
                    if last is not None and (
                        message.applied_index != last.applied_index or message.total_bytes != last.total_bytes
                    ):
                        raise SnapshotFileError(f"{address} changed the snapshot it was sending mid-stream")
                    f.write(message.blob)
                    hasher.update(message.blob)
                    received += len(message.blob)
                    last = message
            except grpc.aio.AioRpcError as err:
                raise errors.error_from_rpc(err) from None
            if last is None or not last.sha256 or last.remaining_bytes != 0:
                raise SnapshotFileError(
                    f"the snapshot stream from {address} ended early after {received} bytes; nothing was saved"
                )
            digest = hasher.digest()
            if received != last.total_bytes or digest.hex() != last.sha256:
                raise SnapshotFileError(
                    f"the snapshot from {address} does not match its checksum ({received} of "
                    f"{last.total_bytes} bytes); nothing was saved"
                )
            f.write(digest)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))
    return SnapshotInfo(
        path=path,
        endpoint=address,
        size=received,
        applied_index=last.applied_index,
        revision=last.revision,
        sha256=last.sha256,
        cluster_id=last.header.cluster_id,
        member_id=last.header.member_id,
        took=time.monotonic() - start,
    )


def read_snapshot_file(path: str) -> bytes:
    """The snapshot bytes of a file ``save_snapshot`` wrote, after checking its digest;
    SnapshotFileError when the file is unreadable, truncated or corrupt."""
    try:
        return snapshot_file.read_snapshot_file(path)
    except snapshot_file.InvalidSnapshotFile as err:
        raise SnapshotFileError(str(err)) from None


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

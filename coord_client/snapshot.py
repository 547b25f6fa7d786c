"""Backups: download a member's state snapshot to a file, and read such a file back.

The file (what ``coordctl snapshot save`` writes and ``coord-server restore`` reads) is
the snapshot bytes exactly as ``Maintenance.Snapshot`` streams them (a serialized
``coord.raft.v1.StateSnapshot``) followed by the 32-byte SHA-256 digest of those bytes.
The digest travels in the file so that a truncated, damaged or foreign file is refused
with a clear message instead of seeding a cluster with half a state.

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

from . import errors
from .aio import AsyncClient

DIGEST_BYTES = 32
"""Length of the SHA-256 digest that ends a snapshot file."""


class SnapshotFileError(errors.CoordError):
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
        with open(path, "rb") as f:
            content = f.read()
    except OSError as err:
        raise SnapshotFileError(f"cannot read snapshot file {path}: {err.strerror}") from None
    if len(content) <= DIGEST_BYTES:
        raise SnapshotFileError(
            f"{path} is not a coord snapshot file: it holds {len(content)} bytes, "
            f"less than a snapshot and its {DIGEST_BYTES}-byte checksum"
        )
    data, digest = content[:-DIGEST_BYTES], content[-DIGEST_BYTES:]
    if hashlib.sha256(data).digest() != digest:
        raise SnapshotFileError(
            f"{path} is corrupt or not a coord snapshot file: its SHA-256 checksum does not match "
            "its contents (truncated or changed since it was saved?)"
        )
    return data


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

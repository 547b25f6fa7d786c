"""The Maintenance service: a member's state machine snapshot, streamed for backups.

Rule 1: the snapshot is the member's own state at the index it has applied when the call
        starts (after a ReadIndex barrier when the request is linearizable), encoded from
        ``StateMachine.image()`` a chunk at a time; later writes never reach it.
Rule 2: every message says which index and revision it covers; the last one carries
        the SHA-256 of the whole snapshot. A receiver keeps nothing it has not checked
        against it (coord_client.snapshot).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.v1 import maintenance_pb2, maintenance_pb2_grpc
from coord_server.errors import Unavailable
from coord_server.state.snapshot import ImageOutdated
from coord_server.member import Member

from .common import Context, Headers, abort, read_barrier

log = logging.getLogger("coord.services.maintenance")

CHUNK_BYTES = 1 << 20
"""Snapshot bytes per stream message: well under gRPC's default 4 MiB receive limit."""


class MaintenanceService(maintenance_pb2_grpc.MaintenanceServicer):
    def __init__(self, node: Member) -> None:
        self.node = node
        self.headers = Headers(node)

    async def Snapshot(
        self, request: maintenance_pb2.MaintenanceSnapshotRequest, context: Context
    ) -> AsyncIterator[maintenance_pb2.MaintenanceSnapshotResponse]:
        node = self.node
        try:
            if node.failed is not None:
                raise Unavailable(f"this member stopped: {node.failed}")
            if request.linearizable:
                await read_barrier(node, context)
            state = node.state
            applied_index, revision = state.applied_index, state.revision
            # Encoded a chunk of keys at a time, the loop serving between two (a million
            # keys took seconds in one go); a compaction meanwhile loses the image.
            image = state.image()
            pieces = [image.head]
            try:
                for chunk in image.chunks():
                    pieces.append(chunk)
                    await asyncio.sleep(0)
            except ImageOutdated as err:
                raise Unavailable(f"{err}; retry") from None
            data = b"".join(pieces)
            del pieces
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated (INTERNAL ones logged) by abort
            await abort(context, exc)
            return
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        total = len(data)
        log.info("sending a snapshot of %d bytes at index %d, revision %d", total, applied_index, revision)
        offset = 0
        while True:
            chunk = data[offset : offset + CHUNK_BYTES]
            offset += len(chunk)
            last = offset >= total
            yield maintenance_pb2.MaintenanceSnapshotResponse(
                header=self.headers.header(revision),
                blob=chunk,
                remaining_bytes=total - offset,
                total_bytes=total,
                applied_index=applied_index,
                revision=revision,
                sha256=digest if last else "",
            )
            if last:
                return

"""The KV service: Range, Put, DeleteRange, Txn, Compact (unary) and Watch (bidi stream).

Writes are proposed as Commands (forwarded to the leader by the node when this member
follows); reads pass a ReadIndex barrier unless serializable, then read the local state.
Watch streams are served by the member's WatchHub (coord_server/watch.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.v1 import kv_pb2, kv_pb2_grpc
from coord_server.state import validation
from coord_server.watch import WatchHub
from coord_server.member import Member

from .common import Context, Headers, abort, check_size, command_of, propose, read_barrier, timeout_of, unary
from .pipeline import PipelineSession

log = logging.getLogger("coord.services.kv")


class KVService(kv_pb2_grpc.KVServicer):
    def __init__(self, node: Member, hub: WatchHub) -> None:
        self.node = node
        self.hub = hub
        self.headers = Headers(node)

    # ------------------------------------------------------------------ reads

    @unary
    async def Range(self, request: kv_pb2.RangeRequest, context: Context) -> kv_pb2.RangeResponse:
        check_size(request)
        validation.validate_range(request)
        if not request.serializable:
            await read_barrier(self.node, context, batched=True)
        response: kv_pb2.RangeResponse = self.node.state.range(request)
        self.headers.stamp(response)
        return response

    # ------------------------------------------------------------------ writes

    @unary
    async def Put(self, request: kv_pb2.PutRequest, context: Context) -> kv_pb2.PutResponse:
        check_size(request)
        validation.validate_put(request)
        response = await propose(self.node, command_of(context, put=request), context, batched=True)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def DeleteRange(
        self, request: kv_pb2.DeleteRangeRequest, context: Context
    ) -> kv_pb2.DeleteRangeResponse:
        check_size(request)
        validation.validate_delete_range(request)
        response = await propose(self.node, command_of(context, delete_range=request), context, batched=True)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Txn(self, request: kv_pb2.TxnRequest, context: Context) -> kv_pb2.TxnResponse:
        check_size(request)
        validation.validate_txn(request)
        response = await propose(self.node, command_of(context, txn=request), context, batched=True)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Compact(self, request: kv_pb2.CompactRequest, context: Context) -> kv_pb2.CompactResponse:
        validation.validate_compact(request)
        response = await propose(self.node, command_of(context, compact=request), context)
        if request.physical:
            await self._wait_replicated(context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    async def _wait_replicated(self, context: Context) -> None:
        """For a physical compaction: wait, within the deadline, until every member's log
        holds this member's applied index (on the leader; a follower waits to have applied
        it itself). Members apply what they store within a heartbeat, and compaction frees
        memory as it is applied, so this is as close to "every member applied it" as the
        leader can observe."""
        node = self.node
        target = node.applied_index
        deadline = time.monotonic() + timeout_of(context)
        if not node.is_leader:
            await node.wait_applied(target)
            return
        interval = node.config.tick_interval
        while time.monotonic() < deadline:
            status = node.raft_status()
            if status.role.name != "LEADER":
                return
            if all(p.match >= target for p in status.progress.values()):
                return
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ pipeline

    async def Pipeline(  # type: ignore[override]  # writes with context.write
        self, request_iterator: AsyncIterator[kv_pb2.PipelineRequest], context: Context
    ) -> None:
        try:
            await PipelineSession(self.node, self.headers, context).serve(request_iterator)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort(context, exc)

    # ------------------------------------------------------------------ watch

    async def Watch(  # type: ignore[override]  # writes with context.write, returns nothing
        self, request_iterator: AsyncIterator[kv_pb2.WatchRequest], context: Context
    ) -> None:
        try:
            await self.hub.serve(request_iterator, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort(context, exc)

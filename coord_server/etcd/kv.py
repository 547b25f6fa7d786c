"""etcd's KV and Watch services over coord's KV service and WatchHub.

Each call is checked as etcd checks it (etcd's messages for an empty key, a value or
lease given with ignore_*, too many operations in a Txn), converted to coord.v1 and run
through coord's own servicer (calls.py); the answer is the same bytes etcd would send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import kv_pb2
from coord_server.state.limits import MAX_TXN_OPS

from . import convert, errors
from .calls import CallContext, CoordAbort, CoordCalls, abort_etcd

RANGE = "/coord.v1.KV/Range"
PUT = "/coord.v1.KV/Put"
DELETE_RANGE = "/coord.v1.KV/DeleteRange"
TXN = "/coord.v1.KV/Txn"
COMPACT = "/coord.v1.KV/Compact"
WATCH = "/coord.v1.KV/Watch"


def check_put(r: etcd.PutRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY
    if r.ignore_value and r.value:
        raise errors.VALUE_PROVIDED
    if r.ignore_lease and r.lease:
        raise errors.LEASE_PROVIDED


def check_txn(r: etcd.TxnRequest, max_ops: int = MAX_TXN_OPS) -> None:
    """etcd's rule: no list of the Txn longer than the limit; keys given; nested Txns
    checked the same way."""
    if max(len(r.compare), len(r.success), len(r.failure)) > max_ops:
        raise errors.TOO_MANY_OPS
    for c in r.compare:
        if not c.key:
            raise errors.EMPTY_KEY
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range" and not op.request_range.key:
            raise errors.EMPTY_KEY
        elif which == "request_put":
            check_put(op.request_put)
        elif which == "request_delete_range" and not op.request_delete_range.key:
            raise errors.EMPTY_KEY
        elif which == "request_txn":
            check_txn(op.request_txn, max_ops)


class EtcdKV(etcd_grpc.KVServicer):
    def __init__(self, calls: CoordCalls) -> None:
        self.calls = calls

    async def Range(self, request: etcd.RangeRequest, context: Any) -> etcd.RangeResponse:
        try:
            if not request.key:
                raise errors.EMPTY_KEY
            response = await self.calls.call(RANGE, convert.range_request(request), context)
            return convert.recode(response, etcd.RangeResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - answered in etcd's terms
            await abort_etcd(context, exc)
            raise

    async def Put(self, request: etcd.PutRequest, context: Any) -> etcd.PutResponse:
        try:
            check_put(request)
            response = await self.calls.call(PUT, convert.recode(request, kv_pb2.PutRequest), context)
            return convert.recode(response, etcd.PutResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def DeleteRange(self, request: etcd.DeleteRangeRequest, context: Any) -> etcd.DeleteRangeResponse:
        try:
            if not request.key:
                raise errors.EMPTY_KEY
            coord_request = convert.recode(request, kv_pb2.DeleteRangeRequest)
            response = await self.calls.call(DELETE_RANGE, coord_request, context)
            return convert.recode(response, etcd.DeleteRangeResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Txn(self, request: etcd.TxnRequest, context: Any) -> etcd.TxnResponse:
        try:
            check_txn(request)
            response = await self.calls.call(TXN, convert.txn_request(request), context)
            return convert.recode(response, etcd.TxnResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Compact(self, request: etcd.CompactionRequest, context: Any) -> etcd.CompactionResponse:
        try:
            coord_request = kv_pb2.CompactRequest(revision=request.revision, physical=request.physical)
            response = await self.calls.call(COMPACT, coord_request, context)
            return etcd.CompactionResponse(header=convert.header(response.header))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise


# ------------------------------------------------------------------ watch

def watch_request(req: etcd.WatchRequest) -> kv_pb2.WatchRequest:
    which = req.WhichOneof("request_union")
    if which == "create_request":
        c = req.create_request
        return kv_pb2.WatchRequest(
            create_request=kv_pb2.WatchCreateRequest(
                key=c.key, range_end=c.range_end, start_revision=c.start_revision,
                progress_notify=c.progress_notify, filters=[f + 1 for f in c.filters],
                prev_kv=c.prev_kv, watch_id=c.watch_id,
            )
        )
    if which == "cancel_request":
        return kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=req.cancel_request.watch_id))
    if which == "progress_request":
        return kv_pb2.WatchRequest(progress_request=kv_pb2.WatchProgressRequest())
    return kv_pb2.WatchRequest()


def watch_responses(r: kv_pb2.WatchResponse) -> list[etcd.WatchResponse]:
    """etcd's answers for one of the WatchHub's. A watch refused because its start was
    compacted is, in etcd, created first, then canceled with compact_revision and etcd's
    message."""
    header = convert.header(r.header)
    if r.created and r.canceled:
        if r.compacted_revision:
            return [
                etcd.WatchResponse(header=header, watch_id=r.watch_id, created=True),
                etcd.WatchResponse(
                    header=header, watch_id=r.watch_id, canceled=True, compact_revision=r.compacted_revision,
                    cancel_reason=errors.COMPACTED.message,
                ),
            ]
        return [etcd.WatchResponse(header=header, watch_id=r.watch_id, created=True, canceled=True,
                                   cancel_reason=r.cancel_reason)]
    out = etcd.WatchResponse(
        header=header, watch_id=r.watch_id, created=r.created, canceled=r.canceled,
        compact_revision=r.compacted_revision, cancel_reason=r.cancel_reason,
    )
    if r.canceled and r.compacted_revision:
        out.cancel_reason = errors.COMPACTED.message
    for e in r.events:
        out.events.append(convert.event(e))
    return [out]


class _WatchContext(CallContext):
    """The WatchHub writes coord responses; the client gets etcd's."""

    __slots__ = ()

    async def write(self, message: Any) -> None:
        for response in watch_responses(message):
            await self.outer.write(response)


class EtcdWatch(etcd_grpc.WatchServicer):
    def __init__(self, calls: CoordCalls, hub: Any, interceptor: Any) -> None:
        self.calls = calls
        self.hub = hub
        self.interceptor = interceptor

    async def Watch(  # type: ignore[override]  # writes with context.write
        self, request_iterator: AsyncIterator[etcd.WatchRequest], context: Any
    ) -> None:
        inner = _WatchContext(context)
        try:
            requests = _converted(request_iterator)
            admission = self.calls.admission(context)
            if admission is not None:
                requests = _admitted(admission, requests)
            await self.hub.serve(requests, inner)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)


async def _converted(requests: AsyncIterator[etcd.WatchRequest]) -> AsyncIterator[kv_pb2.WatchRequest]:
    async for request in requests:
        yield watch_request(request)


async def _admitted(admission: Any, requests: AsyncIterator[kv_pb2.WatchRequest]) -> AsyncIterator[kv_pb2.WatchRequest]:
    async for request in requests:
        admission.check(WATCH, request)
        yield request


__all__ = ["CoordAbort", "EtcdKV", "EtcdWatch"]

"""etcd's KV and Watch services over coord's KV service and WatchHub.

Each call is checked as etcd checks it (etcd's messages for an empty key, a value or
lease given with ignore_*, too many operations in a Txn), converted to coord.v1 and run
through coord's own servicer (calls.py); the answer is the same bytes etcd would send.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.etcd.mvccpb import kv_pb2 as mvcc
from coord.v1 import kv_pb2
from coord_server.state import validation
from coord_server.errors import CoordError
from coord_server.state.limits import MAX_REQUEST_BYTES, MAX_TXN_OPS
from coord_server.member import Member

from . import convert, errors, txn_counts
from .calls import CallContext, CoordCalls, abort_etcd

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
    def __init__(self, node: Member, calls: CoordCalls) -> None:
        self.node = node
        self.calls = calls

    async def Range(self, request: etcd.RangeRequest, context: Any) -> etcd.RangeResponse:
        try:
            coord_request = convert.range_request(request)
            self.calls.precheck(RANGE, coord_request, context)
            if not request.key:
                raise errors.EMPTY_KEY
            response = await self.calls.call(RANGE, coord_request, context)
            if _filtered(request):
                # etcd counts the keys in the range before its revision filters; coord
                # after. The count comes from a second read at the same revision.
                total = await self.calls.call(RANGE, kv_pb2.RangeRequest(
                    key=request.key, range_end=request.range_end, count_only=True, serializable=True,
                    revision=request.revision if request.revision > 0 else response.header.revision,
                ), context)
                response.count = total.count
            convert.finish_range(request, response)
            return convert.recode(response, etcd.RangeResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - answered in etcd's terms
            await abort_etcd(context, exc)
            raise

    async def Put(self, request: etcd.PutRequest, context: Any) -> etcd.PutResponse:
        try:
            coord_request = convert.recode(request, kv_pb2.PutRequest)
            self.calls.precheck(PUT, coord_request, context)
            check_put(request)
            try:
                response = await self.calls.call(PUT, coord_request, context)
            except errors.EtcdError as err:
                # etcd looks the lease up before the key of ignore_value/ignore_lease.
                if err is errors.KEY_NOT_FOUND and request.lease and not self.node.state.has_lease(request.lease):
                    raise errors.LEASE_NOT_FOUND from None
                raise
            return convert.recode(response, etcd.PutResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def DeleteRange(self, request: etcd.DeleteRangeRequest, context: Any) -> etcd.DeleteRangeResponse:
        try:
            coord_request = convert.recode(request, kv_pb2.DeleteRangeRequest)
            self.calls.precheck(DELETE_RANGE, coord_request, context)
            if not request.key:
                raise errors.EMPTY_KEY
            response = await self.calls.call(DELETE_RANGE, coord_request, context)
            return convert.recode(response, etcd.DeleteRangeResponse)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def Txn(self, request: etcd.TxnRequest, context: Any) -> etcd.TxnResponse:
        try:
            coord_request = convert.txn_request(request)
            self.calls.precheck(TXN, coord_request, context)
            check_txn(request)
            if _negative_revision_on_path(self.node.state, request):
                # etcd checks a Txn's range revisions against its first revision, so a
                # negative one there is compacted once anything was compacted (after
                # the checks of the request itself: duplicate keys).
                try:
                    validation.validate_txn(coord_request)
                except CoordError as err:
                    raise errors.translate(err) from None
                raise _first_error_on_path(self.node.state, request, puts_only=True) or errors.COMPACTED
            counted = txn_counts.with_counts(coord_request)
            try:
                response = await self.calls.call(TXN, counted or coord_request, context)
            except errors.EtcdError as err:
                if err in _PATH_ERRORS:
                    raise _first_error_on_path(self.node.state, request) or err from None
                raise
            if counted is not None:
                txn_counts.take_counts(counted, response)
            if _writes(response):
                _stamp_ops(response, response.header.revision - 1, False)
            _nested_headers(response)
            _finish_ranges(request, response)
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


_PATH_ERRORS = (errors.KEY_NOT_FOUND, errors.LEASE_NOT_FOUND, errors.COMPACTED, errors.FUTURE_REV)


def _path(state: Any, r: etcd.TxnRequest) -> list[etcd.RequestOp]:
    """The operations a Txn runs, nested ones included, with every compare evaluated on
    the state before it (as etcd computes the path)."""
    ops = r.success if state.txn_compares_hold(convert.txn_request(etcd.TxnRequest(compare=r.compare))) else r.failure
    out: list[etcd.RequestOp] = []
    for op in ops:
        out.append(op)
        if op.WhichOneof("request") == "request_txn":
            out.extend(_path(state, op.request_txn))
    return out


def _first_error_on_path(state: Any, r: etcd.TxnRequest, puts_only: bool = False) -> errors.EtcdError | None:
    """The error etcd reports for a Txn that fails: it checks every put of the path
    first (the key of ignore_value/ignore_lease, then the lease), then every range."""
    path = _path(state, r)
    for op in path:
        if op.WhichOneof("request") != "request_put":
            continue
        put = op.request_put
        if (put.ignore_value or put.ignore_lease) and not state.range(kv_pb2.RangeRequest(key=put.key, count_only=True)).count:
            return errors.KEY_NOT_FOUND
        if put.lease and not state.has_lease(put.lease):
            return errors.LEASE_NOT_FOUND
    if puts_only:
        return None
    for op in path:
        if op.WhichOneof("request") != "request_range" or op.request_range.revision <= 0:
            continue
        if op.request_range.revision > state.revision:
            return errors.FUTURE_REV
        if op.request_range.revision < state.compact_revision:
            return errors.COMPACTED
    return None


def _negative_revision_on_path(state: Any, r: etcd.TxnRequest) -> bool:
    if not state.compact_revision or not _has_negative_revision(r):
        return False
    return any(op.WhichOneof("request") == "request_range" and op.request_range.revision < 0 for op in _path(state, r))


def _has_negative_revision(r: etcd.TxnRequest) -> bool:
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range" and op.request_range.revision < 0:
            return True
        if which == "request_txn" and _has_negative_revision(op.request_txn):
            return True
    return False


def _filtered(r: etcd.RangeRequest) -> bool:
    return bool(r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision)


def _writes(r: kv_pb2.TxnResponse) -> bool:
    """Whether the Txn changed the store (a put, a delete that deleted, in any branch run)."""
    for op in r.responses:
        which = op.WhichOneof("response")
        if which == "response_put" or (which == "response_delete_range" and op.response_delete_range.deleted):
            return True
        if which == "response_txn" and _writes(op.response_txn):
            return True
    return False


def _stamp_ops(r: kv_pb2.TxnResponse, before: int, wrote: bool) -> bool:
    """etcd answers each operation of a Txn that writes with the revision as of its end:
    ``before`` the Txn until its first write, the Txn's own from then on. Returns whether
    a write came before the end of ``r``."""
    for op in r.responses:
        which = op.WhichOneof("response")
        if which == "response_txn":
            wrote = _stamp_ops(op.response_txn, before, wrote)
            continue
        if which is None:
            continue
        result = getattr(op, which)
        if which == "response_put" or (which == "response_delete_range" and result.deleted):
            wrote = True
        result.header.revision = before + 1 if wrote else before
    return wrote


def _finish_ranges(request: etcd.TxnRequest, response: kv_pb2.TxnResponse) -> None:
    """The ranges of a Txn answered as at the top level (convert.finish_range)."""
    ops = request.success if response.succeeded else request.failure
    for op, result in zip(ops, response.responses):
        which = op.WhichOneof("request")
        if which == "request_range":
            convert.finish_range(op.request_range, result.response_range)
        elif which == "request_txn":
            _finish_ranges(op.request_txn, result.response_txn)


def _nested_headers(r: kv_pb2.TxnResponse) -> None:
    """etcd leaves the header of a nested Txn's response empty, and gives each other
    operation of a Txn a header with the revision alone."""
    for op in r.responses:
        which = op.WhichOneof("response")
        if which == "response_txn":
            nested = op.response_txn
            nested.ClearField("header")
            nested.header.SetInParent()
            _nested_headers(nested)
        elif which is not None:
            result = getattr(op, which)
            revision = result.header.revision
            result.ClearField("header")
            result.header.revision = revision
            result.header.SetInParent()


# ------------------------------------------------------------------ watch

def watch_request(req: etcd.WatchRequest) -> kv_pb2.WatchRequest:
    which = req.WhichOneof("request_union")
    if which == "create_request":
        c = req.create_request
        return kv_pb2.WatchRequest(
            create_request=kv_pb2.WatchCreateRequest(
                key=c.key, range_end=c.range_end, start_revision=c.start_revision,
                progress_notify=c.progress_notify, filters=[kv_pb2.WatchFilterType.ValueType(f + 1) for f in c.filters],
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
    compacted is, in etcd, created first, then canceled with compact_revision, no
    reason and no header revision (clients derive their "required revision has been
    compacted" from it)."""
    header = convert.header(r.header)
    if r.canceled and r.compacted_revision:
        # etcd's cancellation for a compacted start carries no revision in its header.
        compacted = etcd.WatchResponse(header=header, watch_id=r.watch_id, canceled=True,
                                       compact_revision=r.compacted_revision)
        compacted.header.revision = 0
        if r.created:
            return [etcd.WatchResponse(header=header, watch_id=r.watch_id, created=True), compacted]
        return [compacted]
    if r.created and r.canceled:
        return [etcd.WatchResponse(header=header, watch_id=r.watch_id, created=True, canceled=True,
                                   cancel_reason=r.cancel_reason)]
    out = etcd.WatchResponse(
        header=header, watch_id=r.watch_id, created=r.created, canceled=r.canceled, cancel_reason=r.cancel_reason,
    )
    for e in r.events:
        out.events.append(convert.event(e))
    return [out]


FRAGMENT_BYTES = MAX_REQUEST_BYTES
"""A watcher created with ``fragment`` gets responses larger than this split in parts, as
etcd splits them at its request size limit."""


def fragments(response: etcd.WatchResponse, limit: int = FRAGMENT_BYTES) -> list[etcd.WatchResponse]:
    """``response`` in parts of at most ``limit`` bytes of events (at least one event
    each), every part but the last marked ``fragment``."""
    if response.ByteSize() <= limit or len(response.events) < 2:
        return [response]
    parts: list[etcd.WatchResponse] = []
    current = etcd.WatchResponse(header=response.header, watch_id=response.watch_id)
    size = 0
    for e in response.events:
        event_size = e.ByteSize()
        if current.events and size + event_size > limit:
            current.fragment = True
            parts.append(current)
            current = etcd.WatchResponse(header=response.header, watch_id=response.watch_id)
            size = 0
        current.events.append(e)
        size += event_size
    parts.append(current)
    return parts


@dataclass
class _Asked:
    """What the etcd side remembers of one create request until its answer comes."""

    fragment: bool
    revision: int
    """The store's revision when the WatchHub created the watcher: etcd's created header."""
    at_compact: list[mvcc.Event]
    """A watch from exactly the compact revision: the puts of that revision, which etcd
    replays (the hub is asked to start one revision later)."""


class _WatchContext(CallContext):
    """The WatchHub writes coord responses; the client gets etcd's. Creation answers
    come in the order of the create requests, which is how a watcher created with
    ``fragment`` is known by its id."""

    __slots__ = ("asked", "fragmented")

    def __init__(self, outer: Any) -> None:
        super().__init__(outer)
        self.asked: deque[_Asked] = deque()
        self.fragmented: set[int] = set()

    async def write(self, message: Any) -> None:
        asked = self.asked.popleft() if message.created and self.asked else None
        if asked is not None:
            if asked.fragment and not message.canceled:
                self.fragmented.add(message.watch_id)
        elif message.canceled:
            self.fragmented.discard(message.watch_id)
        responses = watch_responses(message)
        if asked is not None:
            # etcd's created header carries the store's revision, whatever the start.
            responses[0].header.revision = asked.revision
            if asked.at_compact and not message.canceled:
                responses.append(etcd.WatchResponse(
                    header=responses[0].header, watch_id=message.watch_id, events=asked.at_compact,
                ))
        for response in responses:
            if response.events and response.watch_id in self.fragmented:
                for part in fragments(response):
                    await self.outer.write(part)
            else:
                await self.outer.write(response)


class EtcdWatch(etcd_grpc.WatchServicer):
    def __init__(self, calls: CoordCalls, hub: Any, node: Member) -> None:
        self.calls = calls
        self.hub = hub
        self.node = node

    async def Watch(  # type: ignore[override]  # writes with context.write
        self, request_iterator: AsyncIterator[etcd.WatchRequest], context: Any
    ) -> None:
        inner = _WatchContext(context)
        try:
            requests = _converted(request_iterator, inner.asked, self.node)
            admission = self.calls.admission(context)
            if admission is not None:
                requests = _admitted(admission, requests)
            await self.hub.serve(requests, inner)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)


async def _converted(
    requests: AsyncIterator[etcd.WatchRequest], asked: deque[_Asked], node: Member
) -> AsyncIterator[kv_pb2.WatchRequest]:
    """coord's requests for etcd's. The hub handles a create request in the same step as
    this yields it (no await in between), so the state read here is the state the
    watcher is created on."""
    async for request in requests:
        converted = watch_request(request)
        if request.WhichOneof("request_union") == "create_request":
            c = request.create_request
            state = node.state
            at_compact: list[mvcc.Event] = []
            if c.start_revision > 0 and c.start_revision == state.compact_revision:
                converted.create_request.start_revision = c.start_revision + 1
                if etcd.WatchCreateRequest.NOPUT not in c.filters:
                    try:
                        at_compact = [convert.event(e) for e in state.puts_at_compact_revision(c.key, c.range_end)]
                    except CoordError:
                        pass  # a bad key: the hub refuses the watcher itself
            asked.append(_Asked(c.fragment, state.revision, at_compact))
        yield converted


async def _admitted(admission: Any, requests: AsyncIterator[kv_pb2.WatchRequest]) -> AsyncIterator[kv_pb2.WatchRequest]:
    async for request in requests:
        admission.check(WATCH, request)
        yield request


__all__ = ["EtcdKV", "EtcdWatch"]

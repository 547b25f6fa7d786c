"""KV, lock and lease-grant operations multiplexed over one KV.Pipeline stream per member.

Why: a unary call costs a Python gRPC server about half a millisecond of CPU before any
work, more than the rest of a Put. Operations issued concurrently (in one event-loop
iteration) travel in one stream message and are committed by the server together.

Rule 1: each operation looks to the caller exactly like its unary RPC: same request, same
        response, and the same ``grpc.aio.AioRpcError`` (code, details, ``coord-leader``
        trailing metadata) on failure, so the transport's retry loop treats both alike.
Rule 2: when the stream breaks, every operation still waiting fails with UNAVAILABLE; the
        retry loop resends it (with its exactly-once client id and sequence, so nothing
        is applied twice), and the next operation opens a new stream.
Rule 3: an operation's timeout travels with it (``timeout_ms``), as a unary call's
        deadline would; a lock_acquire that the caller abandons (its timeout passed, or
        its task was cancelled) is cancelled on the stream too, so the server takes it
        out of the lock's queue, as it would for a unary Acquire whose call ended.
Rule 4: a successful result that names the leader (a follower answered a write or lock
        operation) is passed to ``on_leader``; the transport sends the next such
        operations there.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from coord.v1 import kv_pb2, kv_pb2_grpc

from . import errors

_KINDS = frozenset({"range", "put", "delete_range", "txn", "lock_acquire", "lock_release", "lease_grant"})
"""The PipelineOp request fields, each answered in the PipelineResult field of its name."""


def _rpc_error(code: grpc.StatusCode, details: str, leader: str = "") -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata(("coord-leader", leader)) if leader else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


class PipelineStream:
    """One member's Pipeline stream, opened on first use and reopened after a failure."""

    def __init__(self, stub: kv_pb2_grpc.KVStub, on_leader: Callable[[str], None] | None = None) -> None:
        self._stub = stub
        self._on_leader = on_leader
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._queue: list[kv_pb2.PipelineOp] = []
        self._cancels: list[int] = []
        self._generation = 0
        """Counts the streams opened; a request generator serves only its own."""
        self._wake = asyncio.Event()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def call(
        self, kind: str, request: Any, timeout: float | None, metadata: Sequence[tuple[str, str]] = ()
    ) -> Any:
        """Run one operation of ``kind`` (range, put, delete_range, txn, lock_acquire,
        lock_release, lease_grant); raises AioRpcError like the unary RPC would."""
        if kind not in _KINDS:
            raise ValueError(f"no pipelined operation {kind!r}")
        meta = dict(metadata)
        op = kv_pb2.PipelineOp(
            id=next(self._ids),
            client_id=meta.get("coord-client-id", ""),
            seq=int(meta.get("coord-seq", "0") or 0),
            timeout_ms=math.ceil(timeout * 1000) if timeout is not None and timeout > 0 else 0,
            **{kind: request},
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[op.id] = fut
        self._queue.append(op)
        if len(self._queue) == 1:
            self._wake.set()
        self._ensure_open()
        try:
            async with asyncio.timeout(timeout):
                result: kv_pb2.PipelineResult = await fut
        except TimeoutError:
            self._abandon(op.id, kind)
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "the attempt's deadline passed") from None
        except asyncio.CancelledError:
            self._abandon(op.id, kind)
            raise
        finally:
            self._waiting.pop(op.id, None)
        if result.code:
            code = _CODES.get(result.code, grpc.StatusCode.UNKNOWN)
            raise _rpc_error(code, result.message, result.leader)
        if result.leader and self._on_leader is not None:
            self._on_leader(result.leader)
        return getattr(result, kind)

    def _abandon(self, op_id: int, kind: str) -> None:
        """Rule 3: tell the server about an acquire nobody waits for any more."""
        if self._waiting.pop(op_id, None) is None or kind != "lock_acquire":
            return
        if any(op.id == op_id for op in self._queue):
            self._queue = [op for op in self._queue if op.id != op_id]  # never sent
            return
        self._cancels.append(op_id)
        self._wake.set()

    def _ensure_open(self) -> None:
        if self._reader is None or self._reader.done():
            self._generation += 1
            requests = self._requests(self._generation)
            self._call = self._stub.Pipeline(requests)  # type: ignore[arg-type]  # grpc.aio takes async iterators
            self._reader = asyncio.get_running_loop().create_task(self._read(self._call))

    async def _requests(self, generation: int) -> AsyncIterator[kv_pb2.PipelineRequest]:
        while True:
            await self._wake.wait()
            if generation != self._generation:
                # A stream that ended: its generator must not take the queue, which now
                # belongs to the stream opened after it (Rule 2).
                return
            self._wake.clear()
            batch, self._queue = self._queue[:1024], self._queue[1024:]
            cancels, self._cancels = self._cancels, []
            if self._queue:
                self._wake.set()
            if batch or cancels:
                yield kv_pb2.PipelineRequest(ops=batch, cancel=cancels)

    async def _read(self, call: Any) -> None:
        error: grpc.aio.AioRpcError
        try:
            async for response in call:
                for result in response.results:
                    fut = self._waiting.pop(result.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(result)
            error = _rpc_error(grpc.StatusCode.UNAVAILABLE, "the pipeline stream ended")
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                error = _rpc_error(grpc.StatusCode.UNAVAILABLE, "the pipeline stream was cancelled")
            elif err.code() == grpc.StatusCode.INTERNAL:
                # grpc's own report of a request it could not write on a connection that
                # broke ("Internal error from Core", seen when a leader is SIGKILLed):
                # the stream broke (Rule 2). The server reports its errors per operation.
                error = _rpc_error(grpc.StatusCode.UNAVAILABLE, f"the pipeline stream broke: {err.details()}")
            else:
                error = err
        except asyncio.CancelledError:
            error = _rpc_error(grpc.StatusCode.UNAVAILABLE, "the client is closing")
        # The server may end the stream while grpc still reads our request generator
        # (grpc stops it only on cancel): stop it now.
        call.cancel()
        # Rule 2: whatever was sent or queued on this stream has no answer coming.
        self._queue.clear()
        self._cancels.clear()
        waiting, self._waiting = self._waiting, {}
        hint = errors.leader_hint(error)  # a member that refuses the stream may name where to go
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(_rpc_error(error.code(), error.details() or "the pipeline stream broke", hint))

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

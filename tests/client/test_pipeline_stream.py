"""PipelineStream against a fake stub that behaves as grpc.aio does when a server ends a
stream: the response side ends, but grpc keeps reading the request generator until the
call is cancelled. Operations sent after that must reach the next stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from coord.v1 import kv_pb2
from coord_client._pipeline import PipelineStream


class _EndedCall:
    """The first stream: the server ends it after one request; grpc's reader of the
    request generator goes on until cancel()."""

    def __init__(self, requests: AsyncIterator[kv_pb2.PipelineRequest]) -> None:
        self.first = asyncio.get_running_loop().create_future()
        self.swallowed: list[kv_pb2.PipelineRequest] = []
        self.consumer = asyncio.ensure_future(self._consume(requests))

    async def _consume(self, requests: AsyncIterator[kv_pb2.PipelineRequest]) -> None:
        async for request in requests:
            if not self.first.done():
                self.first.set_result(request)
            else:
                self.swallowed.append(request)  # written to a finished call: lost

    def __aiter__(self) -> AsyncIterator[kv_pb2.PipelineResponse]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[kv_pb2.PipelineResponse]:
        await self.first
        if False:  # pragma: no cover - an async generator that yields nothing
            yield kv_pb2.PipelineResponse()

    def cancel(self) -> None:
        self.consumer.cancel()


class _AnsweringCall:
    """The next stream: answers every put."""

    def __init__(self, requests: AsyncIterator[kv_pb2.PipelineRequest]) -> None:
        self.requests = requests

    def __aiter__(self) -> AsyncIterator[kv_pb2.PipelineResponse]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[kv_pb2.PipelineResponse]:
        async for request in self.requests:
            yield kv_pb2.PipelineResponse(results=[kv_pb2.PipelineResult(id=op.id, put=kv_pb2.PutResponse()) for op in request.ops])

    def cancel(self) -> None:
        pass


class _BrokenCall(_EndedCall):
    """The first stream: grpc fails writing a request on a dying connection and ends the
    call with INTERNAL "Internal error from Core"."""

    async def _responses(self) -> AsyncIterator[kv_pb2.PipelineResponse]:
        await self.first
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), details="Internal error from Core"
        )
        yield kv_pb2.PipelineResponse()  # pragma: no cover - makes this an async generator


class _Stub:
    def __init__(self, first: type[_EndedCall] = _EndedCall) -> None:
        self.first = first
        self.calls: list[Any] = []

    def Pipeline(self, requests: AsyncIterator[kv_pb2.PipelineRequest]) -> Any:  # noqa: N802 - grpc's name
        call = (self.first if not self.calls else _AnsweringCall)(requests)
        self.calls.append(call)
        return call


def test_an_operation_after_the_server_ended_the_stream_goes_on_the_next_stream() -> None:
    async def main() -> None:
        stub = _Stub()
        stream = PipelineStream(stub)  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.call("put", kv_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # The retry opens a second stream; it must carry the put, not the dead first one.
        await stream.call("put", kv_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        assert len(stub.calls) == 2 and stub.calls[0].swallowed == []
        await stream.close()

    asyncio.run(main())


def test_a_stream_that_grpc_ends_with_internal_fails_its_operations_as_unavailable() -> None:
    """So the transport retries them (exactly-once makes that safe); a failover test saw
    INTERNAL reach the callers of puts when the leader was SIGKILLed."""

    async def main() -> None:
        stub = _Stub(_BrokenCall)
        stream = PipelineStream(stub)  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.call("put", kv_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Internal error from Core" in (err.value.details() or "")
        await stream.call("put", kv_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        await stream.close()

    asyncio.run(main())

"""The follower's side of the Raft.Forward stream against a stand-in call: answers are
matched by id, a write the leader never takes ends at the request's deadline and closes
the stream, and a break fails every request it carried."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from coord.raft.v1 import raft_pb2
from coord_server.errors import Unavailable
from coord_server.errors import Code, DeadlineExceeded, Unavailable
from coord_server.transport.grpc_peer import _ForwardStream


class FakeCall:
    """A bidirectional call: ``write`` records (or hangs when ``stall``); the test feeds
    responses with ``answer`` and ends the stream with ``end``."""

    def __init__(self, stall: bool = False) -> None:
        self.written: list[raft_pb2.ForwardRequest] = []
        self.stall = stall
        self.cancelled = False
        self.responses: asyncio.Queue[Any] = asyncio.Queue()

    async def write(self, request: raft_pb2.ForwardRequest) -> None:
        if self.stall:
            await asyncio.Event().wait()
        self.written.append(request)

    def answer(self, response: raft_pb2.ForwardResponse) -> None:
        self.responses.put_nowait(response)

    def end(self) -> None:
        self.responses.put_nowait(None)

    def cancel(self) -> None:
        self.cancelled = True
        self.end()

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> raft_pb2.ForwardResponse:
        item = await self.responses.get()
        if item is None:
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]


class FakePeer:
    def __init__(self, calls: list[FakeCall]) -> None:
        self.calls = calls
        self.opened: list[FakeCall] = []
        self.node_id = 2
        self.transport = type("T", (), {"cluster_id": 7, "metadata": (), "credentials": None})()
        self.channel_credentials = None

    def stub(self) -> Any:
        peer = self

        class Stub:
            def Forward(self, metadata: Any = ()) -> FakeCall:  # noqa: N802 - gRPC's name
                call = peer.calls[len(peer.opened)]
                peer.opened.append(call)
                return call

        return Stub()


async def until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_answers_are_matched_by_id_on_one_stream() -> None:
    asyncio.run(_answers_are_matched_by_id_on_one_stream())


async def _answers_are_matched_by_id_on_one_stream() -> None:
    call = FakeCall()
    stream = _ForwardStream(FakePeer([call]))  # type: ignore[arg-type]
    first = asyncio.ensure_future(stream.request(4, b"a", 5))
    second = asyncio.ensure_future(stream.request(4, b"b", 5))
    await until(lambda: len(call.written) == 2)
    assert [r.payload for r in call.written] == [b"a", b"b"] and call.written[0].cluster_id == 7
    call.answer(raft_pb2.ForwardResponse(id=call.written[1].id, payload=b"B"))
    call.answer(raft_pb2.ForwardResponse(id=call.written[0].id, code=grpc.StatusCode.UNAVAILABLE.value[0],
                                         message="not the leader", leader="127.0.0.1:1"))
    assert await second == b"B"
    with pytest.raises(Unavailable) as refused:
        await first
    assert refused.value.code == Code.UNAVAILABLE and refused.value.leader_address == "127.0.0.1:1"
    stream.close()


def test_a_write_the_leader_never_takes_ends_at_the_deadline_and_closes_the_stream() -> None:
    asyncio.run(_a_write_the_leader_never_takes_ends_at_the_deadline_and_closes_the_stream())


async def _a_write_the_leader_never_takes_ends_at_the_deadline_and_closes_the_stream() -> None:
    stalled, fresh = FakeCall(stall=True), FakeCall()
    peer = FakePeer([stalled, fresh])
    stream = _ForwardStream(peer)  # type: ignore[arg-type]
    with pytest.raises(DeadlineExceeded) as late:
        await asyncio.wait_for(stream.request(4, b"a", 0.05), 10)  # fails, not hangs, if the write is not bounded
    assert late.value.code == Code.DEADLINE_EXCEEDED
    assert stalled.cancelled
    answer = asyncio.ensure_future(stream.request(4, b"b", 5))  # opens a new stream
    await until(lambda: fresh.written)
    fresh.answer(raft_pb2.ForwardResponse(id=fresh.written[0].id, payload=b"ok"))
    assert await answer == b"ok"
    stream.close()


def test_a_stream_that_ends_fails_every_request_it_carried() -> None:
    asyncio.run(_a_stream_that_ends_fails_every_request_it_carried())


async def _a_stream_that_ends_fails_every_request_it_carried() -> None:
    call = FakeCall()
    stream = _ForwardStream(FakePeer([call]))  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(stream.request(4, b"%d" % i, 5)) for i in range(3)]
    await until(lambda: len(call.written) == 3)
    call.end()
    for fut in waiting:
        with pytest.raises(Unavailable):
            await fut
    assert stream.call is None and stream.pending == {}

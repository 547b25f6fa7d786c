"""Unary calls share batches as KV.Pipeline operations do (services/unary_batch.py): many
concurrent unary Puts, at the leader and through a follower, become a few proposal
batches on the leader; concurrent linearizable Ranges share ReadIndex rounds; every call
keeps its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from coord.v1 import kv_pb2
from coord_server.errors import DeadlineExceeded
from coord_server.services.unary_batch import UnaryBatcher

from .helpers import expect_error

pytestmark = pytest.mark.cluster(size=3)

CALLS = 60


def _count_batches(node: Any) -> list[int]:
    """Record the size of every proposal batch ``node`` hands to Raft."""
    sizes: list[int] = []
    original = node.core.propose_batch

    def counting(datas: list[bytes]) -> Any:
        sizes.append(len(datas))
        return original(datas)

    node.core.propose_batch = counting
    return sizes


def _count_read_rounds(node: Any) -> list[int]:
    rounds: list[int] = []
    original = node.core.read_index

    def counting(context: bytes) -> Any:
        rounds.append(1)
        return original(context)

    node.core.read_index = counting
    return rounds


async def test_concurrent_unary_puts_at_leader_and_follower_each_get_their_answer(cluster):
    leader, follower = cluster.leader(), cluster.followers()[0]
    await leader.kv().Put(kv_pb2.PutRequest(key=b"warm", value=b"0"))
    await follower.kv().Put(kv_pb2.PutRequest(key=b"warm", value=b"1"))
    sizes = _count_batches(leader.node)
    at_leader, at_follower = leader.kv(), follower.kv()
    calls = [
        (at_leader if i % 2 else at_follower).Put(kv_pb2.PutRequest(key=f"k{i}".encode(), value=b"v"))
        for i in range(2 * CALLS)
    ]
    responses = await asyncio.gather(*calls)
    revisions = sorted(r.header.revision for r in responses)
    assert len(set(revisions)) == 2 * CALLS  # each its own write, each answered
    assert sum(sizes) == 2 * CALLS
    got = await at_follower.Range(kv_pb2.RangeRequest(key=b"k", range_end=b"l"))
    assert got.count == 2 * CALLS


async def test_concurrent_linearizable_ranges_share_read_rounds(cluster):
    leader, follower = cluster.leader(), cluster.followers()[0]
    put = await leader.kv().Put(kv_pb2.PutRequest(key=b"r", value=b"x"))
    rounds = _count_read_rounds(follower.node)
    kv = follower.kv()
    responses = await asyncio.gather(*(kv.Range(kv_pb2.RangeRequest(key=b"r")) for _ in range(CALLS)))
    assert all(r.kvs[0].value == b"x" and r.header.revision >= put.header.revision for r in responses)
    # Without the batcher a follower starts a round per read here (60 for 60); with it
    # the reads that arrive while a round is out share the next one.
    assert 1 <= len(rounds) <= CALLS // 2, f"{len(rounds)} ReadIndex rounds for {CALLS} reads"


async def test_errors_and_deadlines_stay_per_call(cluster):
    kv = cluster.followers()[0].kv()
    good = [kv.Put(kv_pb2.PutRequest(key=f"ok{i}".encode(), value=b"v")) for i in range(10)]
    bad = [kv.Put(kv_pb2.PutRequest(key=f"bad{i}".encode(), value=b"v", lease=999 + i)) for i in range(5)]
    results = await asyncio.gather(*good, *bad, return_exceptions=True)
    assert all(isinstance(r, kv_pb2.PutResponse) for r in results[:10])
    assert all(isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.NOT_FOUND for r in results[10:])
    # A put whose deadline has passed fails alone, with DEADLINE_EXCEEDED.
    await expect_error(kv.Put(kv_pb2.PutRequest(key=b"late", value=b"v"), timeout=0.000001), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert (await kv.Put(kv_pb2.PutRequest(key=b"after", value=b"v"))).header.revision > 0


class _FakeNode:
    """A node whose proposals and read rounds the test answers by hand."""

    def __init__(self) -> None:
        self.submitted: list[list[bytes]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.rounds: list[asyncio.Future[None]] = []
        self._this_iteration: list[bytes] | None = None

    def submit(self, data: bytes, timeout: float | None = None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self._this_iteration is None:
            self._this_iteration = []
            self.submitted.append(self._this_iteration)
            loop.call_soon(lambda: setattr(self, "_this_iteration", None))
        self._this_iteration.append(data)
        fut: asyncio.Future[Any] = loop.create_future()
        self.futures.append(fut)
        return fut

    def read_barrier_future(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.rounds.append(fut)
        return fut


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_writes_wait_while_a_batch_is_in_flight_then_go_together():
    node = _FakeNode()
    batcher = UnaryBatcher(node)
    first = batcher.submit(b"a", 5)
    await _settle()
    assert node.submitted == [[b"a"]]
    later = [batcher.submit(f"b{i}".encode(), 5) for i in range(3)]
    await _settle()
    gone = batcher.submit(b"cancelled", 5)
    await _settle()
    gone.cancel()  # its call gave up while waiting: never proposed
    assert node.submitted == [[b"a"]]  # held while "a" is in flight
    node.futures[0].set_result("ra")
    await _settle()
    assert first.result() == "ra"
    assert node.submitted == [[b"a"], [b"b0", b"b1", b"b2"]]
    for i, fut in enumerate(node.futures[1:]):
        fut.set_result(i) if i != 1 else fut.set_exception(RuntimeError("its own failure"))
    await _settle()
    assert [f.result() for f in later if f.exception() is None] == [0, 2]
    assert isinstance(later[1].exception(), RuntimeError)


async def test_an_unanswered_batch_frees_its_slot_after_its_timeout():
    node = _FakeNode()
    batcher = UnaryBatcher(node)
    batcher.submit(b"stuck", 0.05)
    await _settle()
    nxt = batcher.submit(b"next", 5)
    await asyncio.sleep(0.2)
    assert node.submitted == [[b"stuck"], [b"next"]]
    node.futures[1].set_result("ok")
    assert await nxt == "ok"


async def test_reads_share_the_next_round():
    node = _FakeNode()
    batcher = UnaryBatcher(node)
    first = batcher.read_barrier(5)
    await _settle()
    waiting = [batcher.read_barrier(5) for _ in range(10)]
    await _settle()
    assert len(node.rounds) == 1
    node.rounds[0].set_result(None)
    await _settle()
    assert first.done() and len(node.rounds) == 2 and not any(f.done() for f in waiting)
    node.rounds[1].set_result(None)
    await _settle()
    assert all(f.done() and f.exception() is None for f in waiting)


async def test_each_operation_fails_at_its_own_deadline_queued_or_in_flight():
    """Rule 5: a deadline passes for an operation in flight and for one still queued
    behind it, each at its own time; the queued one is then never proposed; the others
    keep waiting for their answer, and no deadline fires after its answer came."""
    node = _FakeNode()
    batcher = UnaryBatcher(node)
    in_flight_short = batcher.submit(b"short", 0.05)
    in_flight_long = batcher.submit(b"long", 5)
    await _settle()
    queued_short = batcher.submit(b"queued-short", 0.1)
    queued_long = batcher.submit(b"queued-long", 5)
    read = batcher.read_barrier(0.05)
    await asyncio.sleep(0.2)
    assert isinstance(in_flight_short.exception(), DeadlineExceeded)
    assert "applied" in str(in_flight_short.exception())
    assert isinstance(queued_short.exception(), DeadlineExceeded)
    assert isinstance(read.exception(), DeadlineExceeded) and "quorum" in str(read.exception())
    assert not in_flight_long.done() and not queued_long.done()
    node.futures[0].set_result("late")  # answered after its caller gave up: dropped
    node.futures[1].set_result("on time")
    await _settle()
    assert in_flight_long.result() == "on time"
    assert node.submitted == [[b"short", b"long"], [b"queued-long"]]
    node.futures[2].set_result("also")
    await _settle()
    assert queued_long.result() == "also"
    assert batcher.writes.deadlines == {} and batcher.writes.sweep is None

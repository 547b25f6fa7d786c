"""Lock.Acquire and Lock.Release on KV.Pipeline: the unary semantics, and a waiting
acquire that ends (timeout, cancel, end of the stream) leaves the lock's queue."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from coord.v1 import kv_pb2, lease_pb2, lock_pb2, lock_pb2_grpc

from .conftest import eventually

CANCELLED = grpc.StatusCode.CANCELLED.value[0]
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
FAILED = grpc.StatusCode.FAILED_PRECONDITION.value[0]


class Stream:
    """One open Pipeline stream: send batches (and cancels) as the test goes."""

    def __init__(self, kv: Any) -> None:
        self.outbox: asyncio.Queue[kv_pb2.PipelineRequest | None] = asyncio.Queue()
        self.results: dict[int, kv_pb2.PipelineResult] = {}
        self.call = kv.Pipeline(self._requests(), timeout=60)
        self.reader = asyncio.ensure_future(self._read())

    async def _requests(self) -> Any:
        while (request := await self.outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        async for response in self.call:
            for result in response.results:
                self.results[result.id] = result

    def send(self, *ops: kv_pb2.PipelineOp, cancel: tuple[int, ...] = ()) -> None:
        self.outbox.put_nowait(kv_pb2.PipelineRequest(ops=ops, cancel=cancel))

    async def result(self, op_id: int) -> kv_pb2.PipelineResult:
        await eventually(lambda: op_id in self.results, timeout=20)
        return self.results[op_id]


async def _leases(cluster: Any, n: int) -> list[int]:
    stub = cluster.lease()
    return [(await stub.Grant(lease_pb2.LeaseGrantRequest(ttl=30))).id for _ in range(n)]


def _acquire(op_id: int, lease: int, timeout_ms: int = 0, name: str = "L") -> kv_pb2.PipelineOp:
    return kv_pb2.PipelineOp(id=op_id, timeout_ms=timeout_ms,
                             lock_acquire=lock_pb2.LockAcquireRequest(name=name, lease=lease))


async def _eventually_waiting(cluster: Any, leases: list[int]) -> bool:
    """Whether the queue of lock L becomes exactly ``leases`` (raises if it does not)."""
    lock = lock_pb2_grpc.LockStub(cluster.members[0]._channel())

    async def waiting() -> bool:
        info = await lock.Inspect(lock_pb2.LockInspectRequest(name="L"))
        return [w.lease for w in info.waiters] == leases

    return bool(await eventually(waiting, timeout=20, what=f"the queue to be {leases}"))


async def test_acquire_waits_for_the_release_on_the_same_stream(cluster: Any) -> None:
    a, b = await _leases(cluster, 2)
    stream = Stream(cluster.kv())
    stream.send(_acquire(1, a))
    first = await stream.result(1)
    assert first.code == 0 and first.lock_acquire.acquired and first.lock_acquire.header.cluster_id
    stream.send(_acquire(2, b))
    assert await _eventually_waiting(cluster, [b])
    assert 2 not in stream.results, "the second lease waits"
    stream.send(kv_pb2.PipelineOp(id=3, lock_release=lock_pb2.LockReleaseRequest(name="L", token=first.lock_acquire.token)))
    released, granted = await stream.result(3), await stream.result(2)
    assert released.code == 0 and released.lock_release.header.revision
    assert granted.code == 0 and granted.lock_acquire.acquired
    assert granted.lock_acquire.token > first.lock_acquire.token
    stream.send(kv_pb2.PipelineOp(id=4, lock_release=lock_pb2.LockReleaseRequest(name="L", token=first.lock_acquire.token)))
    assert (await stream.result(4)).code == FAILED, "a stale token is refused, as by Lock.Release"
    stream.outbox.put_nowait(None)
    await stream.reader


async def test_a_waiting_acquire_leaves_the_queue_on_timeout_cancel_and_stream_end(cluster: Any) -> None:
    holder, timed, cancelled, dropped = await _leases(cluster, 4)
    stream = Stream(cluster.kv())
    stream.send(_acquire(1, holder))
    assert (await stream.result(1)).lock_acquire.acquired
    stream.send(_acquire(2, timed, timeout_ms=300), _acquire(3, cancelled))
    assert (await stream.result(2)).code == DEADLINE
    assert await _eventually_waiting(cluster, [cancelled])
    stream.send(cancel=(3,))
    assert (await stream.result(3)).code == CANCELLED
    assert await _eventually_waiting(cluster, [])
    other = Stream(cluster.kv())
    other.send(_acquire(1, dropped))
    assert await _eventually_waiting(cluster, [dropped])
    other.call.cancel()  # the client goes away
    await asyncio.gather(other.reader, return_exceptions=True)
    assert await _eventually_waiting(cluster, [])
    stream.outbox.put_nowait(None)
    await stream.reader

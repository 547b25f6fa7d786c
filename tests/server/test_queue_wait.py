"""QueueWait (services/waits.py) against a stub member and a stub hub: the stages of an
Acquire, each way it ends, and what it proposes to take a lease out of the queue."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import lock_pb2
from coord_server.errors import DeadlineExceeded, FailedPrecondition, NotFound
from coord_server.services import waits
from coord_server.services.waits import QueueWait


class StubNode:
    """Proposals are answered by the test (``answer``); applied index is settable."""

    def __init__(self) -> None:
        self.submitted: list[tuple[command_pb2.Command, asyncio.Future[Any]]] = []
        self.proposed: list[command_pb2.Command] = []  # background proposals (cancels)
        self.applied = 0
        self.applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.failed = None
        self.stopping = False

    def submit(self, data: bytes, timeout: float | None = None, *, lazy: bool = False) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.submitted.append((command_pb2.Command.FromString(data), fut))
        return fut

    async def propose(self, command: command_pb2.Command, timeout: float | None = None) -> Any:
        self.proposed.append(command)
        return command_pb2.CommandResult()

    def applied_future(self, index: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.applied >= index:
            fut.set_result(None)
        else:
            self.applied_waiters.append((index, fut))
        return fut

    def apply_to(self, index: int) -> None:
        self.applied = index
        for at, fut in self.applied_waiters:
            if at <= index and not fut.done():
                fut.set_result(None)

    def answer(self, k: int, *, queued_at: int = 0, token: int = 0) -> None:
        result = command_pb2.CommandResult()
        result.lock_acquire.queued_at = queued_at
        if token:
            result.lock_acquire.response.acquired = True
            result.lock_acquire.response.token = token
        self.submitted[k][1].set_result(result)


class StubHub:
    def __init__(self) -> None:
        self.waits: list[asyncio.Future[Any]] = []
        self.forgotten: list[asyncio.Future[Any]] = []

    def wait_lock(self, name: str, lease: int) -> tuple[asyncio.Future[Any], int]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waits.append(fut)
        return fut, 7

    def forget_lock(self, name: str, lease: int, fut: asyncio.Future[Any]) -> bool:
        self.forgotten.append(fut)
        return True


def start(node: StubNode, hub: StubHub, deadline: float = math.inf, seq: int = 3) -> QueueWait:
    command = command_pb2.Command(client_id="c", seq=seq, lock_acquire=lock_pb2.LockAcquireRequest(name="l", lease=5))
    return QueueWait(node, hub, "lock", "l", 5, command, lambda r: r.response.acquired or not r.queued_at, deadline)


async def queued(node: StubNode, hub: StubHub, k: int = 0) -> QueueWait:
    """A wait whose proposal ``k`` queued the lease at index 7, already applied here."""
    node.applied = 7
    wait = start(node, hub)
    node.answer(k, queued_at=7)
    await settle()
    return wait


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def background_done() -> None:
    if waits._background:
        await asyncio.gather(*waits._background)


async def test_granted_at_once_needs_no_wait() -> None:
    node, hub = StubNode(), StubHub()
    wait = start(node, hub)
    node.answer(0, token=11)
    result, grant = await wait.future
    assert result.response.token == 11 and grant is None
    assert hub.waits == []


async def test_queued_then_granted_resolves_in_the_iteration_after_the_grant() -> None:
    node, hub = StubNode(), StubHub()
    wait = await queued(node, hub)
    assert len(hub.waits) == 1 and not wait.future.done()
    hub.waits[0].set_result(42)
    await asyncio.sleep(0)  # one iteration: the hub future's callbacks run
    assert wait.future.done()
    assert wait.future.result()[1] == 42


async def test_a_follower_waits_until_it_applied_queued_at() -> None:
    node, hub = StubNode(), StubHub()
    wait = start(node, hub)
    node.answer(0, queued_at=9)
    await settle()
    assert hub.waits == []  # not applied yet: the hub is not asked
    node.apply_to(9)
    await settle()
    assert len(hub.waits) == 1
    hub.waits[0].set_result(3)
    assert (await wait.future)[1] == 3


async def test_deadline_while_queued_proposes_a_cancel() -> None:
    node, hub = StubNode(), StubHub()
    node.applied = 7
    wait = start(node, hub, deadline=asyncio.get_running_loop().time() + 0.05)
    node.answer(0, queued_at=7)
    with pytest.raises(DeadlineExceeded):
        await wait.future
    await background_done()
    assert [c.WhichOneof("op") for c in node.proposed] == ["lock_cancel"]
    assert node.proposed[0].lock_cancel.queued_at == 7
    assert hub.forgotten == hub.waits


async def test_cancelled_call_proposes_a_cancel_but_a_grant_is_kept() -> None:
    node, hub = StubNode(), StubHub()
    wait = await queued(node, hub)
    wait.future.cancel()
    await settle()
    await background_done()
    assert len(node.proposed) == 1

    granted = start(node, hub)
    node.answer(1, queued_at=7)
    await settle()
    hub.waits[-1].set_result(8)
    granted.future.cancel()  # cancelled in the same iteration as the grant
    await settle()
    await background_done()
    assert len(node.proposed) == 1, "a grant that won the race is never cancelled"


async def test_a_proposal_that_lands_after_the_deadline_leaves_the_queue() -> None:
    node, hub = StubNode(), StubHub()
    wait = start(node, hub, deadline=asyncio.get_running_loop().time() + 0.02)
    with pytest.raises(DeadlineExceeded, match="may still be applied"):
        await wait.future
    node.answer(0, queued_at=12)  # the Acquire was applied after all, and queued the lease
    await settle()
    await background_done()
    assert [c.lock_cancel.queued_at for c in node.proposed] == [12]


async def test_a_cancelled_place_is_queued_again_once_with_a_fresh_command() -> None:
    node, hub = StubNode(), StubHub()
    wait = await queued(node, hub)
    hub.waits[0].set_exception(FailedPrecondition("the wait was cancelled"))
    await settle()
    assert len(node.submitted) == 2
    fresh = node.submitted[1][0]
    assert fresh.client_id == "" and fresh.seq == 0 and fresh.lock_acquire.lease == 5
    node.answer(1, queued_at=7)
    await settle()
    hub.waits[1].set_exception(FailedPrecondition("cancelled again"))
    with pytest.raises(FailedPrecondition):
        await wait.future
    assert len(node.submitted) == 2


async def test_lease_end_and_refusals_are_the_call_errors() -> None:
    node, hub = StubNode(), StubHub()
    wait = await queued(node, hub)
    hub.waits[0].set_exception(NotFound("lease 5 ended"))
    with pytest.raises(NotFound):
        await wait.future

    refused = start(node, hub)
    result = command_pb2.CommandResult()
    result.error.code = grpc.StatusCode.NOT_FOUND.value[0]
    result.error.message = "lease 5 not found"
    node.submitted[1][1].set_result(result)
    with pytest.raises(NotFound, match="not found"):
        await refused.future


async def test_a_wait_the_log_ended_is_not_cancelled_again() -> None:
    node, hub = StubNode(), StubHub()
    wait = await queued(node, hub)
    hub.waits[0].set_exception(NotFound("lease 5 ended"))
    with pytest.raises(NotFound):
        await wait.future
    await settle()
    await background_done()
    assert node.proposed == []

"""KV.Pipeline: many Range/Put/DeleteRange/Txn, Lock.Acquire/Release and Lease.Grant
operations over one bidirectional stream.

Why: in Python a unary gRPC call costs the server about half a millisecond of CPU before
any work is done, more than the rest of a Put. A pipelined client pays that once per
batch. Each operation keeps its unary RPC's semantics and error codes (same validation,
same Command, same read barrier); only the transport differs.

Rule 1: the writes of one request message are submitted to the node together, so they
        share one group commit (and, on a follower, one Forward call).
Rule 2: the linearizable reads of one request message share one ReadIndex round.
Rule 3: results are sent as they complete, every result completed in one loop iteration
        in one response message; an operation's failure is its result's status, never
        the end of the stream.
Rule 4: a write or lock result from a follower names the leader: every operation but
        a range went through the log, forwarded there. Sent to the leader it saves the two
        forwarding hops (puts at concurrency 64 in bench/loadgen.py, alternating runs:
        2,865-3,696 -> 4,508-5,264/s, with 10% less server CPU), and an Acquire there is
        granted when the leader applies, not a replication round later when this member
        does. Clients send their next writes and lock operations there; reads stay, so
        followers go on sharing them.
Rule 5: a lease_grant passes what the unary Lease.Grant passes (its TTL raised to the
        minimum, the per-client lease limit of the port's interceptor); a client that
        grants thousands of leases at once pays one message per batch, not one call each.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2
from coord_server.auth.admission import CURRENT, check_pipeline_op, recheck_pipeline_op
from coord_server.errors import Cancelled, Internal, InvalidArgument, from_proto
from coord_server.request_context import current_user
from coord_server.state import validation
from coord_server.state.limits import min_lease_ttl
from coord_server.member import Member

from . import lock
from .common import (
    DEFAULT_TIMEOUT,
    Context,
    Headers,
    check_client_id,
    check_size,
    status_of,
)

MAX_OPS_PER_MESSAGE = 1024

_VALIDATORS: dict[str, Callable[[Any], None]] = {
    "range": validation.validate_range,
    "put": validation.validate_put,
    "delete_range": validation.validate_delete_range,
    "txn": validation.validate_txn,
    "lock_acquire": validation.validate_lock_acquire,
    "lock_release": validation.validate_lock_release,
    "lease_grant": validation.validate_lease_grant,
}


class PipelineSession:
    """One Pipeline stream: submits operations, collects and sends their results."""

    def __init__(self, node: Member, headers: Headers, context: Context) -> None:
        self.node = node
        self.headers = headers
        self.context = context
        self.loop = asyncio.get_running_loop()
        self.ready: list[kv_pb2.PipelineResult] = []
        self.wake = asyncio.Event()
        self.outstanding = 0
        self.closed = False
        self.finished: asyncio.Future[None] | None = None
        # lock_acquire operations in progress (they may wait in a queue), by op id.
        self.acquiring: dict[int, asyncio.Future[Any]] = {}
        # lease_grant operations waiting for the lease limit's ReadIndex round.
        self.granting: set[asyncio.Task[None]] = set()

    async def serve(self, requests: AsyncIterator[kv_pb2.PipelineRequest]) -> None:
        writer = asyncio.create_task(self._write_results())
        try:
            async for request in requests:
                for op_id in request.cancel:
                    waiting = self.acquiring.get(op_id)
                    if waiting is not None:
                        waiting.cancel()
                if not request.ops:
                    if request.cancel:
                        continue
                    raise InvalidArgument("a PipelineRequest needs at least one op or cancel")
                if len(request.ops) > MAX_OPS_PER_MESSAGE:
                    raise InvalidArgument(f"a PipelineRequest holds at most {MAX_OPS_PER_MESSAGE} ops, got {len(request.ops)}")
                self._submit_batch(request.ops)
            # The client finished sending: answer what is outstanding, then end.
            if self.outstanding:
                self.finished = self.loop.create_future()
                await self.finished
        finally:
            # Waiting acquires end with the stream and leave their queues (waits.py).
            for waiting in list(self.acquiring.values()):
                waiting.cancel()
            for task in list(self.granting):
                task.cancel()
            self.closed = True
            self.wake.set()
            await asyncio.gather(writer, return_exceptions=True)

    # ------------------------------------------------------------------ submitting

    def _submit_batch(self, ops: Any) -> None:
        reads: list[kv_pb2.PipelineOp] = []
        for op in ops:
            which = op.WhichOneof("request")
            self.outstanding += 1
            try:
                if which is None:
                    raise InvalidArgument(f"op {op.id} has no request set")
                request = getattr(op, which)
                check_size(request)
                check_pipeline_op(which, request)  # as the interceptor does for unary calls: before validation
                _VALIDATORS[which](request)
                if which == "range":
                    if request.serializable:
                        self._serve_read(op)
                    else:
                        reads.append(op)
                    continue
                if which == "lock_acquire":
                    self._start_acquire(op, request)
                    continue
                if which == "lease_grant":
                    self._start_grant(op, request)
                    continue
                command = command_pb2.Command(client_id=_client_id(op), seq=op.seq, user=current_user.get(), **{which: request})
                timeout = op.timeout_ms / 1000 if op.timeout_ms else DEFAULT_TIMEOUT
                fut = self.node.submit(command.SerializeToString(), timeout)
                self._watch(fut, op.id, which, timeout)
            except Exception as exc:  # noqa: BLE001 - the op's result carries it
                self._fail(op.id, exc)
        if reads:
            barrier = self.node.read_barrier_future()
            self._arm_timeout(barrier)
            barrier.add_done_callback(functools.partial(self._after_barrier, reads=reads))

    def _watch(self, fut: asyncio.Future[Any], op_id: int, which: str, timeout: float) -> None:
        self._arm_timeout(fut, timeout)
        fut.add_done_callback(lambda f: self._on_result(f, op_id, which))

    def _arm_timeout(self, fut: asyncio.Future[Any], timeout: float = DEFAULT_TIMEOUT) -> None:
        handle = self.loop.call_later(timeout, _expire, fut)
        fut.add_done_callback(lambda _: handle.cancel())

    def _start_grant(self, op: kv_pb2.PipelineOp, request: lease_pb2.LeaseGrantRequest) -> None:
        """Lease.Grant's checks (Rule 5): the TTL raised to the minimum, the per-client
        lease limit (admitted at once below it; a ReadIndex round first at it, as the
        unary Grant's interceptor does), then proposed like any write."""
        grant = lease_pb2.LeaseGrantRequest(id=request.id, ttl=max(request.ttl, min_lease_ttl(self.node.config.election_timeout)))
        command = command_pb2.Command(client_id=_client_id(op), seq=op.seq, user=current_user.get(), lease_grant=grant)
        admission = CURRENT.get()
        limit = admission.leases if admission is not None and admission.leases.limit > 0 else None
        if limit is None or limit.admit_now(admission.client):  # type: ignore[union-attr]
            self._propose_grant(op, command, limit, admission.client if admission is not None else "")
            return
        task = self.loop.create_task(self._grant_at_limit(op, command, limit, admission.client))  # type: ignore[union-attr]
        self.granting.add(task)
        task.add_done_callback(self.granting.discard)

    async def _grant_at_limit(self, op: kv_pb2.PipelineOp, command: command_pb2.Command, limit: Any, client: str) -> None:
        try:
            await limit.check(client, None)
        except Exception as exc:  # noqa: BLE001 - the op's result carries it
            self._fail(op.id, exc)
            return
        self._propose_grant(op, command, limit, client)

    def _propose_grant(self, op: kv_pb2.PipelineOp, command: command_pb2.Command, limit: Any, client: str) -> None:
        """Under a lease limit the op's timeout ends only its wait, on a future of its
        own: the slot ends with the proposal's outcome (quota.py LeaseLimit.follow), and
        the proposal waits as long as one without a timeout."""
        timeout = op.timeout_ms / 1000 if op.timeout_ms else DEFAULT_TIMEOUT
        try:
            proposal = self.node.submit(command.SerializeToString(), DEFAULT_TIMEOUT if limit is not None else timeout)
        except Exception:
            if limit is not None:
                limit.granted(client, 0)
            raise
        if limit is None:
            self._watch(proposal, op.id, "lease_grant", timeout)
            return
        limit.follow(client, proposal, command.lease_grant.id, command.lease_grant.ttl)
        wait: asyncio.Future[Any] = self.loop.create_future()
        proposal.add_done_callback(functools.partial(_pass_on, wait))
        self._watch(wait, op.id, "lease_grant", timeout)

    def _start_acquire(self, op: kv_pb2.PipelineOp, request: Any) -> None:
        """Lock.Acquire's own path (services/lock.py): it may wait in the lock's queue,
        until a cancel or the end of the stream cancels it."""
        deadline = self.loop.time() + op.timeout_ms / 1000 if op.timeout_ms else math.inf
        wait = lock.start_acquire(self.node, self.node.coord_hub, request, _client_id(op), op.seq, deadline)
        self.acquiring[op.id] = wait.future
        wait.future.add_done_callback(lambda f: self._on_acquired(f, op.id))

    def _on_acquired(self, fut: asyncio.Future[Any], op_id: int) -> None:
        self.acquiring.pop(op_id, None)
        if fut.cancelled():
            self._fail(op_id, Cancelled("the lock_acquire was cancelled"))
            return
        error = fut.exception()
        if error is not None:
            self._fail(op_id, error)
            return
        response, revision = lock.acquire_response(self.node, fut.result())
        self.headers.stamp(response, revision)
        out = kv_pb2.PipelineResult(id=op_id, leader=self._leader_hint())
        out.lock_acquire.CopyFrom(response)
        self._done(out)

    def _on_result(self, fut: asyncio.Future[Any], op_id: int, which: str) -> None:
        error = TimeoutError() if fut.cancelled() else fut.exception()
        if error is not None:
            self._fail(op_id, error)
            return
        result: command_pb2.CommandResult = fut.result()
        got = result.WhichOneof("result")
        if got == "error":
            self._fail(op_id, from_proto(result.error))
            return
        if got != which:
            self._fail(op_id, Internal(f"the state machine answered {got} to {which}"))
            return
        out = kv_pb2.PipelineResult(id=op_id, leader=self._leader_hint())
        response = getattr(out, which)
        response.CopyFrom(getattr(result, which))
        self.headers.stamp(response)
        self._done(out)

    def _leader_hint(self) -> str:
        """Rule 4: on a follower, the leader's client address, for a write or lock result."""
        return "" if self.node.is_leader else self.node.leader_address()

    def _after_barrier(self, fut: asyncio.Future[Any], reads: list[kv_pb2.PipelineOp]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            error = fut.exception() if not fut.cancelled() else TimeoutError()
            for op in reads:
                self._fail(op.id, error)  # type: ignore[arg-type]
            return
        for op in reads:
            try:
                recheck_pipeline_op("range", op.range)  # permissions as of the read point
            except Exception as exc:  # noqa: BLE001 - the op's result carries it
                self._fail(op.id, exc)
                continue
            self._serve_read(op)

    def _serve_read(self, op: kv_pb2.PipelineOp) -> None:
        try:
            response = self.node.state.range(op.range)
        except Exception as exc:  # noqa: BLE001
            self._fail(op.id, exc)
            return
        self.headers.stamp(response)
        out = kv_pb2.PipelineResult(id=op.id)
        out.range.CopyFrom(response)
        self._done(out)

    # ------------------------------------------------------------------ results

    def _fail(self, op_id: int, exc: BaseException) -> None:
        code, message, leader = status_of(exc)
        self._done(kv_pb2.PipelineResult(id=op_id, code=code.value[0], message=message, leader=leader))

    def _done(self, result: kv_pb2.PipelineResult) -> None:
        self.outstanding -= 1
        self.ready.append(result)
        if len(self.ready) == 1:
            self.wake.set()
        if self.outstanding == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    async def _write_results(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.ready:
                batch, self.ready = self.ready, []
                # Each result was stamped when it completed: only the batch's own header
                # is new (stamp() would walk every result again).
                response = kv_pb2.PipelineResponse(header=self.headers.header(), results=batch)
                try:
                    await self.context.write(response)
                except Exception:  # noqa: BLE001 - the client went away
                    return
            if self.closed and not self.ready:
                return


def _client_id(op: kv_pb2.PipelineOp) -> str:
    if op.client_id:
        check_client_id(op.client_id, op.seq != 0, "client_id", "a seq")
    return op.client_id


def _pass_on(wait: asyncio.Future[Any], proposal: asyncio.Future[Any]) -> None:
    """A proposal's outcome to the future its op waits on, unless that timed out first."""
    if wait.done():
        return
    if proposal.cancelled():
        wait.cancel()
    elif proposal.exception() is not None:
        wait.set_exception(proposal.exception())  # type: ignore[arg-type]
    else:
        wait.set_result(proposal.result())


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())

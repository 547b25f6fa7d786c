"""The Lock service: Acquire (proposed, then waits in the lock's queue), Release
(proposed), Inspect (a read).

Acquire proposes a ``lock_acquire`` command. The state machine grants a free lock at once
(the result carries the token) or queues the lease (the result carries ``queued_at``);
then the call waits on its own member for that lease's grant only (services/waits.py,
coord_server/coord_hub.py), up to the call's deadline. The grant itself is decided in the
log: by the Release, or the end of the holder's lease, that frees a permit, in the same
entry. So every member answers the same, and a waiting call survives a change of leader:
its place in the queue is in the replicated state, and the member it waits on applies
the grant whoever leads.
"""

from __future__ import annotations

import logging
from typing import Any

from coord.raft.v1 import command_pb2
from coord.v1 import lock_pb2, lock_pb2_grpc
from coord_server.coord_hub import CoordHub
from coord_server.request_context import current_user
from coord_server.state import validation
from coord_server.member import Member

from .common import (
    Context,
    Headers,
    check_size,
    propose,
    read_barrier,
    session_of,
    unary,
)
from .waits import QueueWait, deadline_of

log = logging.getLogger("coord.services.lock")


class LockService(lock_pb2_grpc.LockServicer):
    def __init__(self, node: Member, hub: CoordHub) -> None:
        self.node = node
        self.hub = hub
        self.headers = Headers(node)

    @unary
    async def Acquire(self, request: lock_pb2.LockAcquireRequest, context: Context) -> lock_pb2.LockAcquireResponse:
        check_size(request)
        validation.validate_lock_acquire(request)
        client_id, seq = session_of(context)
        response, revision = await acquire(self.node, self.hub, request, client_id, seq, deadline_of(context))
        return self.headers.stamp(response, revision)  # type: ignore[return-value]

    @unary
    async def Release(self, request: lock_pb2.LockReleaseRequest, context: Context) -> lock_pb2.LockReleaseResponse:
        validation.validate_lock_release(request)
        client_id, seq = session_of(context)
        command = command_pb2.Command(client_id=client_id, seq=seq, user=current_user.get(), lock_release=request)
        response = await propose(self.node, command, context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Inspect(self, request: lock_pb2.LockInspectRequest, context: Context) -> lock_pb2.LockInspectResponse:
        validation.validate_lock_inspect(request)
        if not request.serializable:
            await read_barrier(self.node, context)
        response = self.node.state.lock_inspect(request.name)
        return self.headers.stamp(response)  # type: ignore[return-value]


async def acquire(
    node: Member, hub: CoordHub, request: lock_pb2.LockAcquireRequest, client_id: str, seq: int, deadline: float
) -> tuple[lock_pb2.LockAcquireResponse, int | None]:
    """Lock.Acquire as a coroutine (the unary RPC): see ``start_acquire``."""
    return acquire_response(node, await start_acquire(node, hub, request, client_id, seq, deadline).future)


def start_acquire(
    node: Member, hub: CoordHub, request: lock_pb2.LockAcquireRequest, client_id: str, seq: int, deadline: float
) -> QueueWait:
    """Lock.Acquire, for the unary RPC and KV.Pipeline alike: propose, then wait in the
    queue until ``deadline`` (loop time; infinity for none). ``acquire_response`` turns
    the outcome into the response."""
    command = command_pb2.Command(client_id=client_id, seq=seq, user=current_user.get(), lock_acquire=request)
    # An Acquire that will queue behind a held lock need not commit at once (Node.submit,
    # which only the leader honours).
    lazy = not request.no_wait and node.state.lock_would_queue(request.name, request.lease)
    return QueueWait(
        node, hub, "lock", request.name, request.lease, command,
        lambda r: r.response.acquired or request.no_wait or not r.queued_at, deadline, lazy,
    )


def acquire_response(node: Member, outcome: tuple[Any, Any]) -> tuple[lock_pb2.LockAcquireResponse, int | None]:
    """The response to an Acquire and the revision for its header (None: keep the state
    machine's)."""
    result, token = outcome
    if token is None:
        return result.response, None
    return lock_pb2.LockAcquireResponse(acquired=True, token=token), node.state.revision

"""What a member does once it has been removed from its cluster (`coordctl member remove`).

A removed member is no longer sent anything by the leader, so on its own it would wait
for a leader forever, as a pre-candidate whose pre-votes nobody grants, and its clients
would see nothing but deadlines. ``RemovalWatch`` notices the removal, as etcd does, and
then the member idles, saying why:

Rule 1: the member knows it was removed when (a) it applied a membership that no longer
        holds it, having held it before, or (b) it has known no leader for
        ``LEADERLESS_CHECK`` seconds and another member answers a linearizable member
        list (a list the current leader vouches for) without it. An unanswered or
        refused question proves nothing: the member keeps waiting and asks again later.
Rule 2: once removed, it logs one error naming the remaining members, stops its Raft
        node (no more campaigns), and answers every client call UNAVAILABLE with a
        message naming the remaining members and, in ``coord-leader``, the leader's
        address, so clients move to the cluster by themselves. Its health says
        NOT_SERVING already (health.py: no leader, or not a member). It does not exit:
        an operator (or its orchestrator) stops it and deletes its data directory
        (docs/operations.md).
Rule 3: (b) asks over plain connections with the member's own settings; where the
        client port needs TLS or a token, only (a) applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from coord.v1 import cluster_pb2, cluster_pb2_grpc

log = logging.getLogger("coord.server")

CHECK_INTERVAL = 1.0
"""Seconds between two looks at the node."""
LEADERLESS_CHECK = 3.0
"""Seconds without a leader before the other members are asked (Rule 1b)."""
ASK_TIMEOUT = 2.0
"""Seconds one member gets to answer the member list."""

_LEFT_ALONE = ("/grpc.health.v1.Health/", "/grpc.reflection.", "/coord.raft.v1.Raft/")
"""Methods a removed member still serves as before (health says NOT_SERVING itself)."""


@dataclass(frozen=True)
class Removed:
    """Why this member stopped: the members that remain, and where to send clients (the
    leader when known, else a member that answered)."""

    members: tuple[cluster_pb2.Member, ...]
    leader_address: str

    def message(self, name: str) -> str:
        listed = ", ".join(f"{m.name or format(m.id, 'x')}={m.client_address}" for m in self.members) or "unknown"
        return (f"member {name} was removed from the cluster; it serves nothing any more. "
                f"Use the remaining members: {listed}")


if TYPE_CHECKING:
    from coord_server.node import Node
    Handler = grpc.RpcMethodHandler[Any, Any]
MemberLister = Callable[[str], Awaitable[list[cluster_pb2.Member] | None]]


async def ask_members(address: str) -> list[cluster_pb2.Member] | None:
    """The linearizable member list of the member at ``address``; None when it did not
    answer (down, no leader, TLS or a token required)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterStub(channel)
        try:
            reply = await stub.MemberList(cluster_pb2.ClusterMemberListRequest(linearizable=True), timeout=ASK_TIMEOUT)
        except grpc.aio.AioRpcError:
            return None
        return list(reply.members)


class RemovalWatch:
    """Watches ``node`` for its removal and, once removed, idles it (module rules)."""

    def __init__(self, node: Node, name: str, lister: MemberLister = ask_members) -> None:
        self.node = node
        self.name = name
        self.lister = lister
        self.removed: Removed | None = None
        self._was_member = False
        self._leaderless_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="removal-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self.removed is None:
            await asyncio.sleep(CHECK_INTERVAL)
            removed = await self.check()
            if removed is not None:
                await self._idle(removed)

    async def check(self) -> Removed | None:
        """One look (Rule 1): the removal found, or None."""
        node = self.node
        conf = node.core.conf_state()
        members_now = set(conf.voters) | set(conf.learners)
        if node.id in members_now:
            self._was_member = True
        elif self._was_member and members_now:
            return Removed(tuple(node.state.members()), node.leader_address())
        if node.leader_id:
            self._leaderless_since = None
            return None
        now = time.monotonic()
        if self._leaderless_since is None:
            self._leaderless_since = now
        if now - self._leaderless_since < LEADERLESS_CHECK:
            return None
        self._leaderless_since = now  # ask again only after another LEADERLESS_CHECK
        others = [m.client_address for m in node.state.members() if m.id != node.id and m.client_address]
        for address in others:
            listed = await self.lister(address)
            if listed is not None:
                if any(m.id == node.id for m in listed):
                    return None
                return Removed(tuple(listed), address)
        return None

    async def _idle(self, removed: Removed) -> None:
        self.removed = removed
        log.error("%s", removed.message(self.name))
        await self.node.stop()


class RemovedInterceptor(grpc.aio.ServerInterceptor):
    """Answers client calls UNAVAILABLE once ``watch`` found this member removed (Rule 2)."""

    def __init__(self, watch: RemovalWatch) -> None:
        self.watch = watch

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        removed = self.watch.removed
        if removed is None or handler is None or handler_call_details.method.startswith(_LEFT_ALONE):
            return handler
        message = removed.message(self.watch.name)
        trailing = (("coord-leader", removed.leader_address),) if removed.leader_address else ()

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAVAILABLE, message, trailing_metadata=trailing)

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await refuse(request, context)
            yield  # pragma: no cover - abort raised

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(refuse_stream, handler.request_deserializer,
                                                        handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(refuse_stream, handler.request_deserializer,
                                                     handler.response_serializer)

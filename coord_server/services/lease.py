"""The Lease service: Grant, Revoke (proposed), KeepAlive and TimeToLive (the leader's
lease clock, forwarded from followers), List (from the state).

Rule 1: remaining time exists only on the leader (coord_server/lease_timer.py). A member
        that follows forwards KeepAlive and TimeToLive to the leader through the Raft
        service's Forward RPC (FORWARD_KIND_LEASE_KEEP_ALIVE / _TIME_TO_LIVE), so a client
        connected to any member is served; the leader answers them with
        ``keepalive_on_leader`` / ``time_to_live_on_leader``, the same code it uses for
        its own clients.
Rule 2: a keepalive is answered only after the leader confirmed its leadership with a
        quorum, one confirmation for every renewal queued on the stream
        (services/lease_renewals.py), so no deposed leader promises a TTL.
Rule 3: TTLs are whole seconds, truncated as etcd does (``int(remaining)``); a lease whose
        time ran out but whose revocation is not applied yet reports -1.
Rule 4: a KeepAlive batch that meets no leader (an election) or a leader that just
        stepped down waits for the next one, up to KEEPALIVE_TIMEOUT, rather than ending
        the stream: every renewal queued on a stream dies with it, and a client holding
        100,000 leases would send them all again at once. Each renewal still counts from
        when it reached the leader, which extended every lease on taking over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.raft.v1 import command_pb2, raft_pb2
from coord.v1 import lease_pb2, lease_pb2_grpc
from coord_server.auth.quota import GRANT_SLOT
from coord_server.errors import Code, CoordError, Unavailable
from coord_server.request_context import current_user
from coord_server.state import validation
from coord_server.state.limits import min_lease_ttl
from coord_server.member import Member

from . import lease_renewals
from .common import (
    DEFAULT_TIMEOUT,
    PROPOSAL_PENDING,
    Context,
    Headers,
    abort,
    bounded,
    check_size,
    propose,
    read_barrier,
    response_of,
    session_of,
    timeout_of,
    unary,
)

log = logging.getLogger("coord.services.lease")

LEADER_POLL = 0.05
"""How often a KeepAlive batch that found no leader looks again (Rule 4)."""

KEEPALIVE_TIMEOUT = 5.0
"""Longest wait for one keepalive on a stream (stream calls rarely carry a deadline): a
keepalive not confirmed by then ends the stream with UNAVAILABLE so the client reconnects,
well before a lease of the minimum TTL could expire."""


# ------------------------------------------------------------------ the leader's side


async def keepalive_on_leader(node: Member, request: lease_pb2.LeaseKeepAliveRequest) -> lease_pb2.LeaseKeepAliveResponse:
    """Renew the lease(s) of ``request`` on this member, which must lead (Unavailable
    otherwise): a keepalive a follower forwarded."""
    response = await lease_renewals.answer_on_leader(node, request)
    return Headers(node).stamp(response, node.state.revision)  # type: ignore[return-value]


async def time_to_live_on_leader(node: Member, request: lease_pb2.LeaseTimeToLiveRequest) -> lease_pb2.LeaseTimeToLiveResponse:
    """Describe a lease by this member's lease clock; it must lead (Unavailable otherwise)."""
    if not node.is_leader:
        raise Unavailable("lease clocks live on the leader", node.leader_address())
    response = _lease_info(node, request)
    remaining = node.lease_remaining(request.id)
    response.ttl = -1 if remaining is None or remaining <= 0 else int(remaining)
    return Headers(node).stamp(response, node.state.revision)  # type: ignore[return-value]


def _lease_info(node: Member, request: lease_pb2.LeaseTimeToLiveRequest) -> lease_pb2.LeaseTimeToLiveResponse:
    """The state's description of a lease (granted TTL and, on request, attachments);
    NOT_FOUND when it does not exist."""
    info = node.state.lease_info(request.id)
    response = lease_pb2.LeaseTimeToLiveResponse(id=request.id, granted_ttl=info.granted_ttl)
    if request.attachments:
        response.keys.extend(info.keys)
        locks, elections, ring_members = node.state.lease_attachments(request.id)
        response.locks.extend(locks)
        response.elections.extend(elections)
        response.ring_members.extend(lease_pb2.LeaseRingMember(ring=r, member_id=m) for r, m in ring_members)
    return response


# ------------------------------------------------------------------ the service


class LeaseService(lease_pb2_grpc.LeaseServicer):
    def __init__(self, node: Member) -> None:
        self.node = node
        self.headers = Headers(node)

    @unary
    async def Grant(self, request: lease_pb2.LeaseGrantRequest, context: Context) -> lease_pb2.LeaseGrantResponse:
        check_size(request)
        validation.validate_lease_grant(request)
        grant = lease_pb2.LeaseGrantRequest()
        grant.CopyFrom(request)
        grant.ttl = max(request.ttl, min_lease_ttl(self.node.config.election_timeout))
        client_id, seq = session_of(context)
        command = command_pb2.Command(client_id=client_id, seq=seq, user=current_user.get(), lease_grant=grant)
        slot = GRANT_SLOT.get()
        if slot is None:
            response = await propose(self.node, command, context)
        else:
            # Under the per-client lease limit the slot ends with the proposal's outcome,
            # not the caller's deadline (quota.py LeaseLimit.follow): the proposal waits
            # as long as a call without one, and the caller's deadline only ends the wait.
            proposal = self.node.submit(command.SerializeToString(), DEFAULT_TIMEOUT)
            slot.follow(proposal, grant.id, grant.ttl)
            result = await bounded(asyncio.shield(proposal), timeout_of(context), PROPOSAL_PENDING)
            response = response_of(result)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Revoke(self, request: lease_pb2.LeaseRevokeRequest, context: Context) -> lease_pb2.LeaseRevokeResponse:
        validation.validate_lease_revoke(request)
        client_id, seq = session_of(context)
        command = command_pb2.Command(client_id=client_id, seq=seq, user=current_user.get(), lease_revoke=request)
        response = await propose(self.node, command, context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    async def KeepAlive(
        self, request_iterator: AsyncIterator[lease_pb2.LeaseKeepAliveRequest], context: Context
    ) -> AsyncIterator[lease_pb2.LeaseKeepAliveResponse]:
        stamp = self.headers.stamp
        try:
            async for response in lease_renewals.answer_stream(request_iterator, self._renew):
                yield stamp(response, self.node.state.revision)  # type: ignore[misc]
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            # Every lease on the stream waits for the client to reconnect: worth a line.
            log.warning("a KeepAlive stream ended: %s: %s", type(exc).__name__, exc)
            await abort(context, exc)

    async def _renew(self, lease_ids: list[int], arrived: list[float]) -> list[int]:
        """One batch of a stream: renewed here when leading, else at the leader (Rule 4)."""
        node = self.node
        deadline = time.monotonic() + KEEPALIVE_TIMEOUT
        while True:
            left = max(0.01, deadline - time.monotonic())
            try:
                if node.is_leader:
                    return await bounded(
                        lease_renewals.renew_on_leader(node, lease_ids, arrived), left, "the keepalive was confirmed",
                    )
                return await bounded(
                    lease_renewals.forward_renewals(node, lease_ids, left), left, "the leader answered",
                )
            except CoordError as err:
                if err.code == Code.UNAVAILABLE:  # also a forward the old leader refused
                    if time.monotonic() + LEADER_POLL >= deadline:
                        raise
                    # Rule 4: wait out the election, then renew at the new leader.
                    await asyncio.sleep(LEADER_POLL)
                    continue
                if err.code == Code.DEADLINE_EXCEEDED:
                    raise Unavailable("the keepalive could not be confirmed in time; reconnect", node.leader_address()) from None
                raise

    @unary
    async def TimeToLive(
        self, request: lease_pb2.LeaseTimeToLiveRequest, context: Context
    ) -> lease_pb2.LeaseTimeToLiveResponse:
        if self.node.is_leader:
            return await time_to_live_on_leader(self.node, request)
        return await self._forward(  # type: ignore[no-any-return]
            raft_pb2.FORWARD_KIND_LEASE_TIME_TO_LIVE, request, lease_pb2.LeaseTimeToLiveResponse, timeout_of(context)
        )

    @unary
    async def List(self, request: lease_pb2.LeaseListRequest, context: Context) -> lease_pb2.LeaseListResponse:
        await read_barrier(self.node, context)
        response = lease_pb2.LeaseListResponse(leases=self.node.state.lease_list())
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    async def _forward(self, kind: int, request: Any, response_type: Any, timeout: float) -> Any:
        """Send ``request`` to the leader through Raft.Forward; the answer, re-stamped as
        this member's."""
        node = self.node
        leader = node.leader_id
        if not leader:
            raise Unavailable("no leader is elected yet; retry shortly")
        payload = await bounded(
            node.forward(leader, kind, request.SerializeToString(), timeout), timeout,
            "the leader answered",
        )
        response = response_type.FromString(payload)
        return self.headers.stamp(response, node.state.revision)

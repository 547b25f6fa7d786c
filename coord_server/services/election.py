"""The Election service: Campaign (proposed, then waits to lead), Proclaim and Resign
(proposed), Leader (a read) and Observe (a stream of states).

Campaign waits like Lock.Acquire (services/waits.py): on its own member, for its own
lease's leadership only. Observe streams the election's state after every change, in the
order the log applied them (coord_server/coord_hub.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.v1 import election_pb2, election_pb2_grpc
from coord_server.coord_hub import CoordHub
from coord_server.state import validation
from coord_server.member import Member

from .common import Context, Headers, abort, check_size, command_of, leader_metadata, propose, read_barrier, unary
from .waits import QueueWait, deadline_of

log = logging.getLogger("coord.services.election")


class ElectionService(election_pb2_grpc.ElectionServicer):
    def __init__(self, node: Member, hub: CoordHub) -> None:
        self.node = node
        self.hub = hub
        self.headers = Headers(node)

    @unary
    async def Campaign(
        self, request: election_pb2.ElectionCampaignRequest, context: Context
    ) -> election_pb2.ElectionCampaignResponse:
        check_size(request)
        validation.validate_election_campaign(request)
        result, key = await QueueWait(
            self.node, self.hub, "election", request.name, request.lease,
            command_of(context, election_campaign=request),
            lambda r: r.response.HasField("leader") or not r.queued_at, deadline_of(context),
        ).future
        self._name_leader(context)
        if key is None:
            return self.headers.stamp(result.response)  # type: ignore[return-value]
        won = election_pb2.ElectionCampaignResponse(leader=key)
        return self.headers.stamp(won, self.node.state.revision)  # type: ignore[return-value]

    @unary
    async def Proclaim(
        self, request: election_pb2.ElectionProclaimRequest, context: Context
    ) -> election_pb2.ElectionProclaimResponse:
        check_size(request)
        validation.validate_election_proclaim(request)
        response = await propose(self.node, command_of(context, election_proclaim=request), context)
        self._name_leader(context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Resign(
        self, request: election_pb2.ElectionResignRequest, context: Context
    ) -> election_pb2.ElectionResignResponse:
        validation.validate_election_resign(request)
        response = await propose(self.node, command_of(context, election_resign=request), context)
        self._name_leader(context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    def _name_leader(self, context: Context) -> None:
        """On a follower, name the leader in ``coord-leader`` on success too: coord_client
        sends its next election calls there (as for locks: services/pipeline.py Rule 4)."""
        if not self.node.is_leader:
            context.set_trailing_metadata(leader_metadata(self.node.leader_address()))

    @unary
    async def Leader(
        self, request: election_pb2.ElectionLeaderRequest, context: Context
    ) -> election_pb2.ElectionLeaderResponse:
        validation.validate_name(request.name, "election name")
        if not request.serializable:
            await read_barrier(self.node, context)
        state = self.node.state.election_leader(request.name)
        response = election_pb2.ElectionLeaderResponse(value=state.value)
        key = state.leader_key()
        if key is not None:
            response.leader.CopyFrom(key)
        if request.candidates:
            response.candidates.extend(
                election_pb2.ElectionCandidate(lease=lease, value=value, revision=revision, token=token)
                for lease, value, revision, token in self.node.state.election_candidates(request.name)
            )
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    async def Observe(
        self, request: election_pb2.ElectionObserveRequest, context: Context
    ) -> AsyncIterator[election_pb2.ElectionObserveResponse]:
        feed = None
        try:
            validation.validate_name(request.name, "election name")
            await read_barrier(self.node, context)
            feed = self.hub.observe(request.name)
            while True:
                body = await self.hub.next(feed)
                response = election_pb2.ElectionObserveResponse()
                response.CopyFrom(body)
                yield self.headers.stamp(response, self.node.state.revision)  # type: ignore[misc]
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            await abort(context, exc)
        finally:
            if feed is not None:
                self.hub.close_feed(feed)

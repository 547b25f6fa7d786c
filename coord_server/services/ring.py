"""The Ring service: Join and Leave (proposed), Lookup and Get (reads), Watch (a stream of
versions).

Lookup computes placements with ``coord_client.hashring.HashRing``, the module a client
uses on Ring.Get's answer, so the server's answer and the client's local computation
agree by construction. A member keeps the HashRing of each ring's latest version it served
(rebuilt only when the version changes); a large ring (over LARGE_RING points) is built
in a worker thread so that the event loop, which also runs Raft, keeps ticking.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.v1 import ring_pb2, ring_pb2_grpc
from coord_common.hashring import HashRing, point_count
from coord_server.coord_hub import CoordHub
from coord_server.errors import NotFound
from coord_server.state import validation
from coord_server.member import Member

from .common import Context, Headers, abort, check_size, command_of, propose, read_barrier, unary

log = logging.getLogger("coord.services.ring")

LARGE_RING = 50_000
"""Rings with more points than this are built off the event loop."""
CACHED_RINGS = 64
"""HashRings kept per member (least recently used go first)."""


class RingService(ring_pb2_grpc.RingServicer):
    def __init__(self, node: Member, hub: CoordHub) -> None:
        self.node = node
        self.hub = hub
        self.headers = Headers(node)
        self._rings: OrderedDict[str, tuple[int, HashRing]] = OrderedDict()

    @unary
    async def Join(self, request: ring_pb2.RingJoinRequest, context: Context) -> ring_pb2.RingJoinResponse:
        check_size(request)
        validation.validate_ring_join(request)
        response = await propose(self.node, command_of(context, ring_join=request), context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    @unary
    async def Leave(self, request: ring_pb2.RingLeaveRequest, context: Context) -> ring_pb2.RingLeaveResponse:
        validation.validate_ring_leave(request)
        response = await propose(self.node, command_of(context, ring_leave=request), context)
        return self.headers.stamp(response)  # type: ignore[return-value]

    async def _ring(self, name: str, serializable: bool, context: Context) -> Any:
        validation.validate_name(name, "ring name")
        if not serializable:
            await read_barrier(self.node, context)
        ring = self.node.state.ring(name)
        if ring is None:
            raise NotFound(f"ring {name!r} does not exist (it has no members)")
        return ring

    async def _hash_ring(self, ring: Any) -> HashRing:
        version = ring.version  # read before any await: the ring may change meanwhile
        cached = self._rings.get(ring.name)
        if cached is not None and cached[0] == version:
            self._rings.move_to_end(ring.name)
            return cached[1]
        members = [(m.id, m.weight) for m in ring.members.values()]
        if point_count([w for _, w in members], ring.mode, ring.vnodes) > LARGE_RING:
            built = await asyncio.to_thread(HashRing, members, ring.mode, ring.vnodes)
        else:
            built = HashRing(members, ring.mode, ring.vnodes)
        self._rings[ring.name] = (version, built)
        self._rings.move_to_end(ring.name)
        while len(self._rings) > CACHED_RINGS:
            self._rings.popitem(last=False)
        return built

    @unary
    async def Lookup(self, request: ring_pb2.RingLookupRequest, context: Context) -> ring_pb2.RingLookupResponse:
        ring = await self._ring(request.ring, request.serializable, context)
        version, members = ring.version, dict(ring.members)
        placed = (await self._hash_ring(ring)).lookup(request.key, request.n or 1)
        response = ring_pb2.RingLookupResponse(version=version)
        response.members.extend(members[m].to_proto() for m in placed)
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    @unary
    async def Get(self, request: ring_pb2.RingGetRequest, context: Context) -> ring_pb2.RingGetResponse:
        ring = await self._ring(request.ring, request.serializable, context)
        response = ring_pb2.RingGetResponse(version=ring.version)
        response.settings.CopyFrom(ring.settings())
        response.members.extend(m.to_proto() for m in ring.sorted_members())
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    async def Watch(
        self, request: ring_pb2.RingWatchRequest, context: Context
    ) -> AsyncIterator[ring_pb2.RingWatchResponse]:
        feed = None
        try:
            validation.validate_name(request.ring, "ring name")
            await read_barrier(self.node, context)
            feed = self.hub.watch_ring(request.ring, request.after_version)
            while True:
                body = await self.hub.next(feed)
                response = ring_pb2.RingWatchResponse()
                response.CopyFrom(body)
                yield self.headers.stamp(response, self.node.state.revision)  # type: ignore[misc]
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            await abort(context, exc)
        finally:
            if feed is not None:
                self.hub.close_feed(feed)

"""etcd's Lease service over coord's: the same leases, the same lease clock on the leader.

Differences from coord's answers that etcd clients rely on: TimeToLive of an unknown
lease is a response with TTL -1 (not NOT_FOUND), a keepalive of an unknown lease answers
TTL 0, and a TTL of 0 or less is granted as the minimum TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import lease_pb2
from coord_server.auth.lease_owner import check_lease_owner
from coord_server.services import lease_renewals
from coord_server.state.limits import MAX_LEASE_TTL, MIN_LEASE_TTL

from . import convert, errors
from .calls import CoordCalls, abort_etcd

GRANT = "/coord.v1.Lease/Grant"
REVOKE = "/coord.v1.Lease/Revoke"
KEEP_ALIVE = "/coord.v1.Lease/KeepAlive"
TIME_TO_LIVE = "/coord.v1.Lease/TimeToLive"
LIST = "/coord.v1.Lease/List"


class EtcdLease(etcd_grpc.LeaseServicer):
    def __init__(self, calls: CoordCalls, lease_service: Any) -> None:
        self.calls = calls
        self.lease_service = lease_service
        """coord's LeaseService: its keepalive path (leader or forwarded) is reused."""

    async def LeaseGrant(self, request: etcd.LeaseGrantRequest, context: Any) -> etcd.LeaseGrantResponse:
        try:
            if request.TTL > MAX_LEASE_TTL:
                raise errors.LEASE_TTL_TOO_LARGE
            coord_request = lease_pb2.LeaseGrantRequest(ttl=max(request.TTL, MIN_LEASE_TTL), id=request.ID)
            r = await self.calls.call(GRANT, coord_request, context)
            return etcd.LeaseGrantResponse(header=convert.header(r.header), ID=r.id, TTL=r.ttl)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - answered in etcd's terms
            await abort_etcd(context, exc)
            raise

    async def LeaseRevoke(self, request: etcd.LeaseRevokeRequest, context: Any) -> etcd.LeaseRevokeResponse:
        try:
            if request.ID <= 0:
                raise errors.LEASE_NOT_FOUND
            r = await self.calls.call(REVOKE, lease_pb2.LeaseRevokeRequest(id=request.ID), context)
            return etcd.LeaseRevokeResponse(header=convert.header(r.header))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[etcd.LeaseKeepAliveRequest], context: Any
    ) -> AsyncIterator[etcd.LeaseKeepAliveResponse]:
        try:
            admission = self.calls.admission(context)
            node = self.lease_service.node

            async def coord_requests() -> AsyncIterator[lease_pb2.LeaseKeepAliveRequest]:
                async for request in request_iterator:
                    coord_request = lease_pb2.LeaseKeepAliveRequest(id=request.ID)
                    if admission is not None:
                        admission.check(KEEP_ALIVE, coord_request)
                        await check_lease_owner(admission, node, request.ID)
                    yield coord_request

            # coord's own batching (services/lease_renewals.py): renewals that queue up
            # while one batch is confirmed share the next leadership check.
            async for r in lease_renewals.answer_stream(coord_requests(), self.lease_service._renew):
                stamped = self.lease_service.headers.stamp(r, node.state.revision)
                yield etcd.LeaseKeepAliveResponse(header=convert.header(stamped.header), ID=r.id, TTL=r.ttl)
        except (grpc.aio.AbortError, asyncio.CancelledError, grpc.aio.UsageError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)

    async def LeaseTimeToLive(self, request: etcd.LeaseTimeToLiveRequest, context: Any) -> etcd.LeaseTimeToLiveResponse:
        try:
            coord_request = lease_pb2.LeaseTimeToLiveRequest(id=request.ID, attachments=request.keys)
            try:
                r = await self.calls.call(TIME_TO_LIVE, coord_request, context)
            except errors.EtcdError as err:
                if err is not errors.LEASE_NOT_FOUND:
                    raise
                header = self.lease_service.headers.header()
                return etcd.LeaseTimeToLiveResponse(header=convert.header(header), ID=request.ID, TTL=-1)
            return etcd.LeaseTimeToLiveResponse(
                header=convert.header(r.header), ID=r.id, TTL=r.ttl, grantedTTL=r.granted_ttl, keys=r.keys
            )
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise

    async def LeaseLeases(self, request: etcd.LeaseLeasesRequest, context: Any) -> etcd.LeaseLeasesResponse:
        try:
            r = await self.calls.call(LIST, lease_pb2.LeaseListRequest(), context)
            return etcd.LeaseLeasesResponse(
                header=convert.header(r.header), leases=[etcd.LeaseStatus(ID=le.id) for le in r.leases]
            )
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            raise


__all__ = ["EtcdLease"]

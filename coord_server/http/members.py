"""``Coord-Member: <id>``: a Connect call answered by another member of the cluster.

Some calls describe the member that answers them (Cluster.Status above all). A client
that can reach only one member's HTTP listener, such as the dashboard, names the member
it wants in this header; the listener looks the member up in Cluster.MemberList and makes
the same call, with the same Authorization, on that member's client port. The target
checks the token as it checks any call. Without TLS the call goes over plain TCP; with
TLS it presents this member's peer certificate and trusts the peer CA, which works where
one CA signs the peer and client certificates (as `make certs` does, and as --join
already needs); elsewhere the call fails and the dashboard shows the member as
unreachable from here.
"""

from __future__ import annotations

import grpc

from coord.v1 import cluster_pb2
from coord_server.http.listener import HttpContext


class UnknownMember(LookupError):
    """The header names no member of the cluster (or is not a number)."""


class MemberChannels:
    """Channels to the other members' client ports, one per address, made on first use."""

    def __init__(self, ctx: HttpContext) -> None:
        self._ctx = ctx
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._member_list = ctx.channel.unary_unary(
            "/coord.v1.Cluster/MemberList",
            request_serializer=cluster_pb2.ClusterMemberListRequest.SerializeToString,
            response_deserializer=cluster_pb2.ClusterMemberListResponse.FromString,
        )

    async def channel(self, header: str, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.Channel:
        try:
            member_id = int(header, 0)
        except ValueError:
            raise UnknownMember(f"Coord-Member must be a member id, got {header!r}") from None
        members = await self._member_list(cluster_pb2.ClusterMemberListRequest(), metadata=metadata, timeout=5)
        if members.header.member_id == member_id:
            return self._ctx.channel
        for member in members.members:
            if member.id == member_id and member.client_address:
                return self._for(member.client_address)
        raise UnknownMember(f"no member {member_id:#x} in this cluster")

    def _for(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            creds = self._ctx.member_credentials
            options = [("grpc.max_receive_message_length", -1)]
            channel = (grpc.aio.secure_channel(address, creds, options=options) if creds is not None
                       else grpc.aio.insecure_channel(address, options=options))
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

"""etcd's membership calls on a follower, relayed to the leader.

etcd's followers forward MemberAdd, MemberRemove, MemberUpdate and MemberPromote to their
leader, so ``etcdctl member add`` works through any endpoint; coord's Cluster service
answers a follower's membership change with UNAVAILABLE and the leader's address, which
etcd clients cannot use. A follower therefore makes the same etcd call on the leader's
client port, with the caller's token, and passes its answer or status back unchanged;
the leader checks the token as for any call.

Without TLS the call goes over plain TCP. With TLS it presents this member's peer
certificate and trusts the peer CA (the peer transport's current credentials, which
server.py hands in), which
works where one CA signs the peer and client certificates, as `make certs` does and as
``--join`` and the dashboard's ``Coord-Member`` calls need too. A member whose client
port uses TLS but that has no peer credentials refuses to relay (FAILED_PRECONDITION,
naming the leader and the fix) rather than send the caller's token in clear to a TLS
port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from coord_server.member import Member

from coord.etcd.etcdserverpb import rpc_pb2 as etcd

RELAYED_METADATA = ("token", "authorization")
"""The caller's credentials, passed on to the leader."""
RELAYED_MARK = "coord-etcd-relayed"
"""Metadata on a relayed call: it is answered where it arrives, never relayed again (a
member that believes another leads while the other believes the same of it)."""

_RESPONSES: dict[str, Any] = {
    "MemberAdd": etcd.MemberAddResponse,
    "MemberRemove": etcd.MemberRemoveResponse,
    "MemberUpdate": etcd.MemberUpdateResponse,
    "MemberPromote": etcd.MemberPromoteResponse,
}


class LeaderRelay:
    """One member's channels to whoever leads, made on first use."""

    def __init__(
        self, node: Member, credentials: Callable[[], grpc.ChannelCredentials | None], client_tls: bool = False,
    ) -> None:
        self.node = node
        self.credentials = credentials
        """This member's current peer credentials (they change when certificates reload)."""
        self.client_tls = client_tls
        """Whether the client ports use TLS (cert_file): then a relay never goes in clear."""
        self._channels: dict[tuple[str, int], grpc.aio.Channel] = {}

    def leader_elsewhere(self, context: Any) -> str:
        """The leader's client address when another member leads and the call was not
        relayed here already; "" otherwise."""
        node = self.node
        if node.is_leader or not node.leader_id:
            return ""
        if any(key == RELAYED_MARK for key, _ in (context.invocation_metadata() or ())):
            return ""
        return node.leader_address()

    def _channel(self, address: str) -> grpc.aio.Channel:
        credentials = self.credentials()
        key = (address, id(credentials))
        channel = self._channels.get(key)
        if channel is None:
            channel = (grpc.aio.secure_channel(address, credentials) if credentials is not None
                       else grpc.aio.insecure_channel(address))
            self._channels[key] = channel
        return channel

    async def call(self, address: str, method: str, request: Any, context: Any) -> Any:
        """etcd's Cluster ``method`` with ``request`` on the member at ``address``; its
        status ends ``context`` as it came."""
        response_class = _RESPONSES[method]
        if self.client_tls and self.credentials() is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this member cannot relay {method} to the leader at {address}: its client port uses TLS "
                "but this member has no peer TLS credentials to reach it with (and will not send the "
                "token in clear); send the call to the leader, or give this member peer mutual TLS "
                "(peer_listen, peer_cert_file, peer_key_file, peer_ca_file; docs/security.md)",
            )
            raise AssertionError("not reached")
        call = self._channel(address).unary_unary(
            f"/etcdserverpb.Cluster/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        metadata = tuple(
            (key, value if isinstance(value, str) else value.decode())
            for key, value in (context.invocation_metadata() or ())
            if key in RELAYED_METADATA
        ) + ((RELAYED_MARK, "1"),)
        remaining = context.time_remaining()
        try:
            return await call(request, metadata=metadata, timeout=remaining if remaining else 30.0)
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "")
            raise AssertionError("not reached") from None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

"""etcd's v3 gRPC API (etcdserverpb KV, Watch, Lease, Cluster, Maintenance, Auth; v3lockpb;
v3electionpb), served beside coord.v1 on the client port over the same state machine.

One store, two APIs: every etcd call is translated into the coord.v1 call that means the
same and run through coord's own servicers and admission checks (calls.py), so a key,
lease or watch is the same object through either API. docs/etcd.md says what maps and
what does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2_grpc
from coord.etcd.v3electionpb import v3election_pb2_grpc
from coord.etcd.v3lockpb import v3lock_pb2_grpc
from coord_server.services import ClusterService, KVService, LeaseService
from coord_server.services.auth import AuthService
from coord_server.member import Member

from .calls import CoordCalls
from .auth import METHODS as AUTH_METHODS
from .auth import EtcdAuth
from .cluster import ETCD_VERSION, EtcdCluster, EtcdMaintenance
from .relay import LeaderRelay
from .kv import EtcdKV, EtcdWatch
from .lease import EtcdLease
from .recipes import EtcdElection, EtcdLock, Recipes

__all__ = ["COORD_EQUIVALENTS", "ETCD_VERSION", "add_etcd_services"]

COORD_EQUIVALENTS = {
    "/etcdserverpb.KV/Range": "/coord.v1.KV/Range",
    "/etcdserverpb.KV/Put": "/coord.v1.KV/Put",
    "/etcdserverpb.KV/DeleteRange": "/coord.v1.KV/DeleteRange",
    "/etcdserverpb.KV/Txn": "/coord.v1.KV/Txn",
    "/etcdserverpb.KV/Compact": "/coord.v1.KV/Compact",
    "/etcdserverpb.Watch/Watch": "/coord.v1.KV/Watch",
    "/etcdserverpb.Lease/LeaseGrant": "/coord.v1.Lease/Grant",
    "/etcdserverpb.Lease/LeaseRevoke": "/coord.v1.Lease/Revoke",
    "/etcdserverpb.Lease/LeaseKeepAlive": "/coord.v1.Lease/KeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive": "/coord.v1.Lease/TimeToLive",
    "/etcdserverpb.Lease/LeaseLeases": "/coord.v1.Lease/List",
    "/etcdserverpb.Cluster/MemberList": "/coord.v1.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberAdd": "/coord.v1.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove": "/coord.v1.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberPromote": "/coord.v1.Cluster/MemberPromote",
    "/etcdserverpb.Maintenance/Status": "/coord.v1.Cluster/Status",
    "/etcdserverpb.Maintenance/MoveLeader": "/coord.v1.Cluster/TransferLeadership",
    "/etcdserverpb.Maintenance/Snapshot": "/coord.v1.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/Hash": "/coord.v1.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/HashKV": "/coord.v1.Maintenance/Snapshot",
    "/etcdserverpb.Auth/AuthEnable": "/coord.v1.Auth/Enable",
    "/etcdserverpb.Auth/AuthDisable": "/coord.v1.Auth/Disable",
    **{
        f"/etcdserverpb.Auth/{name}": f"/coord.v1.Auth/{name}"
        for name in AUTH_METHODS
        if name.startswith(("User", "Role"))
    },
}
"""The coord.v1 call each etcd call is admitted as (locks and elections: the KV calls
they make; every other etcd call needs an admin role when auth is on)."""


def add_etcd_services(
    server: grpc.aio.Server, node: Member, interceptor: Any,
    peer_credentials: Callable[[], grpc.ChannelCredentials | None] = lambda: None,
    client_tls: bool = False,
) -> None:
    """Register etcd's services for ``node`` (after coord's: they share its WatchHub),
    checked by ``interceptor`` (the member's AdmissionInterceptor, or None).
    ``peer_credentials``: this member's current peer TLS credentials (None without TLS),
    with which a follower relays etcd's membership calls to the leader (relay.py);
    ``client_tls``: whether the client ports use TLS (then a relay is never in clear)."""
    calls = CoordCalls(interceptor)
    if interceptor is not None:
        # With auth on, every call of these services first proves a valid token
        # (coord_server/auth/rules.py: TRANSLATED), as etcd clients send it.
        interceptor.translated_admit = calls.admission
    kv = KVService(node, node.watch_hub)
    lease = LeaseService(node)
    cluster = ClusterService(node)
    for name in ("Range", "Put", "DeleteRange", "Txn", "Compact"):
        calls.register(f"/coord.v1.KV/{name}", getattr(kv, name))
    for name in ("Grant", "Revoke", "TimeToLive", "List"):
        calls.register(f"/coord.v1.Lease/{name}", getattr(lease, name))
    for name in ("MemberList", "MemberAdd", "MemberRemove", "MemberPromote", "Status", "TransferLeadership"):
        calls.register(f"/coord.v1.Cluster/{name}", getattr(cluster, name))
    auth = AuthService(node)
    for name in AUTH_METHODS:
        calls.register(f"/coord.v1.Auth/{name}", getattr(auth, name))
    rpc_pb2_grpc.add_KVServicer_to_server(EtcdKV(node, calls), server)
    rpc_pb2_grpc.add_WatchServicer_to_server(EtcdWatch(calls, node.watch_hub, node), server)
    rpc_pb2_grpc.add_LeaseServicer_to_server(EtcdLease(calls, lease), server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(EtcdCluster(node, calls, cluster, LeaderRelay(node, peer_credentials, client_tls)), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(EtcdMaintenance(node, calls), server)
    rpc_pb2_grpc.add_AuthServicer_to_server(EtcdAuth(node, interceptor, calls), server)
    recipes = Recipes(node, calls)
    v3lock_pb2_grpc.add_LockServicer_to_server(EtcdLock(recipes), server)
    v3election_pb2_grpc.add_ElectionServicer_to_server(EtcdElection(recipes), server)

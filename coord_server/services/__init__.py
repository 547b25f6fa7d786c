"""coord's public gRPC services (coord.v1): thin servicers over the member.

``add_services(server, member)`` registers KV (with Watch), Lease, Cluster, Maintenance, Lock, Election,
Ring and Auth on a grpc.aio server and returns the handler for Raft.Forward (requests followers relay to the leader),
which the caller passes to ``RaftPeerService``. Every servicer holds the ``Member``
(coord_server/member.py), never the Node: its ``node`` attribute is that face.
"""

from __future__ import annotations

import grpc

from coord.v1 import (
    auth_pb2_grpc, cluster_pb2_grpc, election_pb2_grpc, kv_pb2_grpc, lease_pb2_grpc, lock_pb2_grpc, maintenance_pb2_grpc, ring_pb2_grpc,
)
from coord_server.member import Member
from coord_server.watch import WatchHub

from .auth import AuthService
from .cluster import ClusterService
from .common import SERVER_OPTIONS
from .forward import ForwardHandler, make_forward_handler
from .kv import KVService
from .election import ElectionService
from .lease import LeaseService
from .lock import LockService
from .maintenance import MaintenanceService
from .ring import RingService
from .unary_batch import UnaryBatcher

__all__ = [
    "SERVER_OPTIONS", "ClusterService", "ForwardHandler", "KVService", "LeaseService", "UnaryBatcher", "WatchHub",
    "add_services", "make_forward_handler",
]


def add_services(server: grpc.aio.Server, node: Member) -> ForwardHandler:
    """Register the public services for member ``node`` on ``server``; returns the forward
    handler. The member's hubs feed the waiting calls and streams (Watch; Lock, Election
    and Ring); whoever built them closes them."""
    hub = node.watch_hub
    kv_pb2_grpc.add_KVServicer_to_server(KVService(node, hub), server)
    lease_pb2_grpc.add_LeaseServicer_to_server(LeaseService(node), server)
    cluster_pb2_grpc.add_ClusterServicer_to_server(ClusterService(node), server)
    maintenance_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceService(node), server)
    coord_hub = node.coord_hub
    lock_pb2_grpc.add_LockServicer_to_server(LockService(node, coord_hub), server)
    election_pb2_grpc.add_ElectionServicer_to_server(ElectionService(node, coord_hub), server)
    ring_pb2_grpc.add_RingServicer_to_server(RingService(node, coord_hub), server)
    auth_pb2_grpc.add_AuthServicer_to_server(AuthService(node), server)
    return make_forward_handler(node)

"""Peer transport: the coord.raft.v1 Raft service over gRPC, and the message codec."""

from .grpc_peer import PeerTransport, RaftPeerService, forwarded_error

__all__ = ["PeerTransport", "RaftPeerService", "forwarded_error"]

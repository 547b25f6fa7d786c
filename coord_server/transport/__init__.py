"""Peer transport: the coord.raft.v1 Raft service over gRPC, and the message codec."""

from .grpc_peer import ForwardedError, PeerTransport, RaftPeerService

__all__ = ["ForwardedError", "PeerTransport", "RaftPeerService"]

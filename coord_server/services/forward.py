"""The leader's side of Raft.Forward: client requests relayed by followers.

``make_forward_handler(node)`` returns the callback RaftPeerService calls with (kind,
payload, timeout); it answers exactly as the leader answers its own clients. Errors leave
as CoordError (RaftPeerService turns those into the status, with `coord-leader` when this
member no longer leads), so a domain error is wrapped rather than becoming INTERNAL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import DecodeError

from coord.raft.v1 import command_pb2, raft_pb2
from coord.v1 import lease_pb2
from coord_server.errors import CoordError, InvalidArgument, Unavailable
from coord_server.state import validation
from coord_server.member import Member

from .common import DEFAULT_TIMEOUT, as_coord_error, bounded
from .lease import keepalive_on_leader, time_to_live_on_leader

ForwardHandler = Callable[[int, bytes, "float | None"], Awaitable[bytes]]


def make_forward_handler(node: Member) -> ForwardHandler:
    async def handle(kind: int, payload: bytes, timeout: float | None) -> bytes:
        try:
            return await bounded(_handle(node, kind, payload), timeout or DEFAULT_TIMEOUT, "the leader answered")
        except CoordError:
            raise
        except Exception as exc:  # noqa: BLE001 - domain errors keep their code
            raise as_coord_error(exc) from None

    return handle


def _parse(message_type: Any, payload: bytes) -> Any:
    try:
        return message_type.FromString(payload)
    except DecodeError as err:
        raise InvalidArgument(f"undecodable forwarded {message_type.DESCRIPTOR.name}: {err}") from None


async def _handle(node: Member, kind: int, payload: bytes) -> bytes:
    if not node.is_leader:
        raise Unavailable("this member is not the leader", node.leader_address())
    if kind == raft_pb2.FORWARD_KIND_PROPOSE:
        command = _parse(command_pb2.Command, payload)
        validation.validate_command(command)
        result = await node.propose_local(payload)
        return result.SerializeToString()
    if kind == raft_pb2.FORWARD_KIND_PROPOSE_BATCH:
        # The follower validated each command at its edge, and apply re-validates: the
        # leader does not parse them again (it is the busiest member).
        batch = _parse(raft_pb2.ForwardBatch, payload)
        results = await node.propose_local_many(list(batch.items))
        return raft_pb2.ForwardBatch(items=[r.SerializeToString() for r in results]).SerializeToString()
    if kind == raft_pb2.FORWARD_KIND_LEASE_KEEP_ALIVE:
        request = _parse(lease_pb2.LeaseKeepAliveRequest, payload)
        return (await keepalive_on_leader(node, request)).SerializeToString()
    if kind == raft_pb2.FORWARD_KIND_LEASE_TIME_TO_LIVE:
        request = _parse(lease_pb2.LeaseTimeToLiveRequest, payload)
        return (await time_to_live_on_leader(node, request)).SerializeToString()
    raise InvalidArgument(f"unknown forward kind {kind}")

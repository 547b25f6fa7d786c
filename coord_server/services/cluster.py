"""The Cluster service: this member's Raft status, the member list, single-server
membership changes and leadership transfer.

Rule 1: membership changes are decided by the leader (one change at a time, learners
        first). A member that follows answers them with UNAVAILABLE and the leader's
        address in `coord-leader`; clients retry there.
Rule 2: a new member's ID is a 63-bit hash of its name, peer address and a random salt,
        never 0 and never one in use: IDs are unique for the life of the cluster.
Rule 3: removing the leader itself hands leadership to the most up-to-date other voter
        first, then asks the new leader to do the removal (a leader that removed itself
        would leave the cluster leaderless for an election timeout).
Rule 4: a voter is added directly only through etcd's MemberAdd (``add_member`` with
        ``learner=False``; coord.v1 adds learners), and only while the cluster stays
        able to commit without it: every voter is active (else UnhealthyCluster), and
        the voters that have started make a quorum of the voters after the add (else
        NotEnoughStartedMembers). etcd's strict reconfiguration check, without its
        exception for a one-member cluster: there the new voter would be needed for
        every commit, including its own removal should it never start.
Rule 5: a member added without a name (etcd's MemberAdd has none) is completed by the
        first MemberAdd that names it at the same peer address (the new member's
        ``--join``): a conf change of the member's own kind carrying its name and
        client address, as etcd's members publish theirs when they start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from importlib import metadata
from typing import Any

import grpc

from coord.raft.v1 import command_pb2
from coord.v1 import cluster_pb2, cluster_pb2_grpc
from coord_server.errors import (
    BadAddress, DeadlineExceeded, FailedPrecondition, LearnerNotCaughtUp, LearnerTransferee, MemberNotFound, NotALearner,
    NotEnoughStartedMembers, PeerAddressInUse, Unavailable, UnhealthyCluster,
)
from coord_server.raft import ConfChange, ConfChangeType, Role
from coord_server.member import Member

from .common import (
    Context,
    Headers,
    bounded,
    leader_metadata,
    read_barrier,
    timeout_of,
    unary,
)

log = logging.getLogger("coord.services.cluster")

_ROLES = {
    Role.FOLLOWER: cluster_pb2.RAFT_ROLE_FOLLOWER,
    Role.PRE_CANDIDATE: cluster_pb2.RAFT_ROLE_PRE_CANDIDATE,
    Role.CANDIDATE: cluster_pb2.RAFT_ROLE_CANDIDATE,
    Role.LEADER: cluster_pb2.RAFT_ROLE_LEADER,
}


def _version() -> str:
    try:
        return metadata.version("coord")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def parse_address(what: str, address: str) -> None:
    """A "host:port" address; INVALID_ARGUMENT otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in address):
        raise BadAddress(f"{what} must be host:port, got {address!r}")


def new_member_id(name: str, peer_address: str, taken: set[int]) -> int:
    """Rule 2."""
    while True:
        salt = os.urandom(16)
        digest = hashlib.sha256(name.encode() + b"\x00" + peer_address.encode() + b"\x00" + salt).digest()
        member_id = int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
        if member_id and member_id not in taken:
            return member_id


class ClusterService(cluster_pb2_grpc.ClusterServicer):
    def __init__(self, node: Member) -> None:
        self.node = node
        self.headers = Headers(node)

    # ------------------------------------------------------------------ helpers

    def _members(self) -> list[cluster_pb2.Member]:
        """Every member by ascending ID: the state's table (names, addresses), with the
        voter/learner split as the core applied it."""
        node = self.node
        members = {m.id: m for m in node.state.members()}
        conf = node.conf_state()
        for member_id in set(conf.voters) | set(conf.learners):
            if member_id not in members:
                address = node.address_of(member_id)
                members[member_id] = cluster_pb2.Member(id=member_id, peer_address=address, client_address=address)
        for member_id, member in members.items():
            if member_id in conf.learners:
                member.is_learner = True
            elif member_id in conf.voters:
                member.is_learner = False
        return [members[i] for i in sorted(members)]

    def _require_leader(self, what: str) -> None:
        node = self.node
        if not node.is_leader:
            if node.leader_id:
                raise Unavailable(f"{what} goes through the leader", node.leader_address())
            raise Unavailable("no leader is elected yet; retry shortly")

    def _member(self, member_id: int) -> cluster_pb2.Member:
        for m in self._members():
            if m.id == member_id:
                return m
        raise MemberNotFound(f"member {member_id:#x} not found")

    async def _change(self, change: ConfChange, context: Context) -> None:
        await bounded(
            self.node.propose_conf_change(change), timeout_of(context),
            "the membership change was applied (it may still be applied)",
        )

    # ------------------------------------------------------------------ RPCs

    @unary
    async def Status(self, request: cluster_pb2.ClusterStatusRequest, context: Context) -> cluster_pb2.ClusterStatusResponse:
        node = self.node
        if node.failed is not None:
            raise Unavailable(f"this member stopped: {node.failed}")
        st = node.raft_status()
        response = cluster_pb2.ClusterStatusResponse(
            version=VERSION,
            role=_ROLES.get(st.role, cluster_pb2.RAFT_ROLE_UNSPECIFIED),
            leader=st.leader,
            is_learner=node.id in st.conf_state.learners,
            commit_index=st.commit,
            applied_index=node.applied_index,
            log_first_index=st.first_index,
            log_last_index=st.last_index,
            log_entries=max(0, st.last_index - st.first_index + 1),
            watchers=node.watch_hub.watcher_count,
            leases=node.state.lease_count(),
        )
        disk = node.storage_status()
        response.snapshot_index = disk.snapshot_index
        response.snapshot_term = disk.snapshot_term
        response.log_size_bytes = disk.log_bytes
        response.snapshot_size_bytes = disk.snapshot_bytes
        return self.headers.stamp(response, node.state.revision)  # type: ignore[return-value]

    @unary
    async def MemberList(
        self, request: cluster_pb2.ClusterMemberListRequest, context: Context
    ) -> cluster_pb2.ClusterMemberListResponse:
        if request.linearizable:
            await read_barrier(self.node, context)
        response = cluster_pb2.ClusterMemberListResponse(members=self._members())
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    @unary
    async def MemberAdd(
        self, request: cluster_pb2.ClusterMemberAddRequest, context: Context
    ) -> cluster_pb2.ClusterMemberAddResponse:
        return await self.add_member(request, context, learner=True)

    async def add_member(
        self, request: cluster_pb2.ClusterMemberAddRequest, context: Context, *, learner: bool
    ) -> cluster_pb2.ClusterMemberAddResponse:
        """A new member at ``request.peer_address``, a learner or (Rule 4) a voter; or
        the unnamed member already there, completed (Rule 5)."""
        parse_address("peer_address", request.peer_address)
        if request.client_address:
            parse_address("client_address", request.client_address)
        self._require_leader("a membership change")
        members = self._members()
        for m in members:
            if m.peer_address == request.peer_address:
                if m.name or not request.name:
                    raise PeerAddressInUse(f"peer address {request.peer_address} is already used by member {m.id:#x}")
                return await self._complete(m, request, context)
        if not learner:
            self._check_voter_add()
        taken = {m.id for m in members}
        member_id = new_member_id(request.name, request.peer_address, taken)
        info = command_pb2.MemberInfo(
            id=member_id, name=request.name, peer_address=request.peer_address,
            client_address=request.client_address,
        )
        kind = ConfChangeType.ADD_LEARNER if learner else ConfChangeType.ADD_NODE
        await self._change(ConfChange(kind, member_id, info.SerializeToString()), context)
        after = self._members()
        added = next(
            (m for m in after if m.id == member_id),
            cluster_pb2.Member(
                id=member_id, name=request.name, peer_address=request.peer_address,
                client_address=request.client_address, is_learner=learner,
            ),
        )
        response = cluster_pb2.ClusterMemberAddResponse(member=added, members=after)
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    async def _complete(
        self, member: cluster_pb2.Member, request: cluster_pb2.ClusterMemberAddRequest, context: Context
    ) -> cluster_pb2.ClusterMemberAddResponse:
        """Rule 5."""
        for m in self._members():
            if m.name == request.name:
                raise FailedPrecondition(f"member name {request.name!r} is already used by member {m.id:#x}")
        info = command_pb2.MemberInfo(
            id=member.id, name=request.name, peer_address=member.peer_address, client_address=request.client_address,
        )
        kind = ConfChangeType.ADD_LEARNER if member.is_learner else ConfChangeType.ADD_NODE
        await self._change(ConfChange(kind, member.id, info.SerializeToString()), context)
        after = self._members()
        completed = next((m for m in after if m.id == member.id), member)
        response = cluster_pb2.ClusterMemberAddResponse(member=completed, members=after)
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    def _check_voter_add(self) -> None:
        """Rule 4, on the leader: a voter has started once it acknowledged this leader's
        log (the leader has); it is active if it also answered within the last election
        timeout. A voter added but never started is neither, as in etcd."""
        node = self.node
        status = node.raft_status()
        voters = status.conf_state.voters
        for voter in voters:
            peer = status.progress.get(voter)
            if voter != node.id and (peer is None or not peer.recent_active or peer.match == 0):
                raise UnhealthyCluster(
                    f"voter {voter:#x} has not answered the leader lately (or never started); adding a voter now is unsafe"
                )
        started = sum(1 for v in voters if v == node.id or (v in status.progress and status.progress[v].match > 0))
        quorum = (len(voters) + 1) // 2 + 1
        if started < quorum:
            raise NotEnoughStartedMembers(
                f"{started} of {len(voters)} voters have started; a quorum of {len(voters) + 1} voters needs {quorum}. "
                "Add a learner and promote it once it has caught up"
            )

    @unary
    async def MemberPromote(
        self, request: cluster_pb2.ClusterMemberPromoteRequest, context: Context
    ) -> cluster_pb2.ClusterMemberPromoteResponse:
        self._require_leader("a membership change")
        member = self._member(request.id)
        if not member.is_learner:
            raise NotALearner(f"member {request.id:#x} is already a voter")
        if not self.node.learner_caught_up(request.id):
            raise LearnerNotCaughtUp(f"learner {request.id:#x} has not caught up with the leader's log yet; retry later")
        await self._change(ConfChange(ConfChangeType.ADD_NODE, request.id), context)
        response = cluster_pb2.ClusterMemberPromoteResponse(members=self._members())
        return self.headers.stamp(response, self.node.state.revision)  # type: ignore[return-value]

    async def update_member(self, member_id: int, peer_address: str, context: Context) -> list[cluster_pb2.Member]:
        """Give a member a new peer address (etcd's MemberUpdate; coord.v1 has no such RPC):
        a second conf change of the member's own kind, a no-op for the Raft core, whose
        MemberInfo context carries the address (state/members.py Rule 1). Its ID, name,
        role and client address stay. Returns every member after the change."""
        parse_address("peer_address", peer_address)
        self._require_leader("a membership change")
        member = self._member(member_id)
        for m in self._members():
            if m.id != member_id and m.peer_address == peer_address:
                raise PeerAddressInUse(f"peer address {peer_address} is already used by member {m.id:#x}")
        info = command_pb2.MemberInfo(
            id=member.id, name=member.name, peer_address=peer_address, client_address=member.client_address,
        )
        kind = ConfChangeType.ADD_LEARNER if member.is_learner else ConfChangeType.ADD_NODE
        await self._change(ConfChange(kind, member.id, info.SerializeToString()), context)
        return self._members()

    @unary
    async def MemberRemove(
        self, request: cluster_pb2.ClusterMemberRemoveRequest, context: Context
    ) -> cluster_pb2.ClusterMemberRemoveResponse:
        node = self.node
        self._require_leader("a membership change")
        member = self._member(request.id)
        if request.id == node.id and not member.is_learner:
            others = [m.id for m in self._members() if not m.is_learner and m.id != node.id]
            if not others:
                raise FailedPrecondition("cannot remove the last voter")
            forwarded = await self._remove_self(request, context)
            if forwarded is not None:
                return forwarded
        await self._change(ConfChange(ConfChangeType.REMOVE_NODE, request.id), context)
        response = cluster_pb2.ClusterMemberRemoveResponse(members=self._members())
        return self.headers.stamp(response, node.state.revision)  # type: ignore[return-value]

    async def _remove_self(
        self, request: cluster_pb2.ClusterMemberRemoveRequest, context: Context
    ) -> cluster_pb2.ClusterMemberRemoveResponse | None:
        """Rule 3: hand leadership over, then have the new leader remove this member.
        None when the hand-over did not happen (this member, still leading, removes itself;
        the core steps down once the removal is applied)."""
        node = self.node
        target = node.transfer_target()
        if target is None:
            return None
        deadline = time.monotonic() + timeout_of(context)
        node.transfer_leadership(target)
        if not await self._wait_leader(target, min(deadline, time.monotonic() + 3 * node.config.election_timeout)):
            return None
        address = node.leader_address()
        if not address or node.config.client_tls:
            raise Unavailable("leadership was handed over; retry at the new leader", address)
        remaining = max(0.1, deadline - time.monotonic())
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = cluster_pb2_grpc.ClusterStub(channel)
                forwarded = await stub.MemberRemove(request, timeout=remaining)
        except grpc.aio.AioRpcError as err:
            leader = dict(err.trailing_metadata() or ()).get("coord-leader", "")
            await context.abort(err.code(), err.details() or "", trailing_metadata=leader_metadata(str(leader)))
            raise  # not reached
        return self.headers.stamp(forwarded, node.state.revision)  # type: ignore[return-value]

    async def _wait_leader(self, target: int, deadline: float) -> bool:
        node = self.node
        interval = node.config.tick_interval
        while node.leader_id != target:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)
        return True

    @unary
    async def TransferLeadership(
        self, request: cluster_pb2.ClusterTransferLeadershipRequest, context: Context
    ) -> cluster_pb2.ClusterTransferLeadershipResponse:
        node = self.node
        target = request.target_id
        if target == 0:
            self._require_leader("choosing the transfer target")
            chosen = node.transfer_target()
            if chosen is None:
                raise FailedPrecondition("there is no other voter to hand leadership to")
            target = chosen
        member = self._member(target)
        if member.is_learner:
            raise LearnerTransferee(f"member {target:#x} is a learner; promote it first")
        if not node.leader_id:
            raise Unavailable("no leader is elected yet; retry shortly")
        if node.leader_id != target:
            deadline = time.monotonic() + timeout_of(context)
            bound = time.monotonic() + 3 * node.config.election_timeout
            node.transfer_leadership(target)
            if not await self._wait_leader(target, min(deadline, bound)):
                if time.monotonic() >= deadline:
                    raise DeadlineExceeded("the deadline passed before the transfer completed")
                raise Unavailable("the leadership transfer was abandoned; retry", node.leader_address())
        response = cluster_pb2.ClusterTransferLeadershipResponse(leader=target)
        return self.headers.stamp(response, node.state.revision)  # type: ignore[return-value]

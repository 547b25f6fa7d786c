"""etcd's Cluster, Maintenance and Auth services over coord's Cluster service and state.

What does not map (docs/etcd.md): Defragment has nothing to do; alarms are never
raised; Snapshot streams coord's own snapshot format, not a bbolt file (``coord-server
restore`` reads what etcdctl saves; etcdctl's snapshot restore and status cannot). etcd's Auth service is auth.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from coord.v1 import cluster_pb2, kv_pb2, maintenance_pb2

from coord_server.member import Member

from . import convert, errors
from .calls import CallContext, CoordCalls, abort_etcd, as_coord_error
from .relay import LeaderRelay

ETCD_VERSION = "3.5.0"
"""The etcd API version coord speaks, as Status and the gateway's /version report it."""

MEMBER_LIST = "/coord.v1.Cluster/MemberList"
MEMBER_ADD = "/coord.v1.Cluster/MemberAdd"
MEMBER_REMOVE = "/coord.v1.Cluster/MemberRemove"
MEMBER_PROMOTE = "/coord.v1.Cluster/MemberPromote"
STATUS = "/coord.v1.Cluster/Status"
TRANSFER = "/coord.v1.Cluster/TransferLeadership"
SNAPSHOT = "/coord.v1.Maintenance/Snapshot"
SNAPSHOT_CHUNK = 1 << 20


PADDING_FIELD = (1 << 29) - 1
"""The highest field number protobuf allows: StateSnapshot will never define it."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def snapshot_padding(size: int) -> bytes:
    """Bytes that take ``size`` bytes of a serialized StateSnapshot to a multiple of 512:
    one length-delimited field numbered PADDING_FIELD (which parsing skips), or nothing
    when ``size`` is a multiple already."""
    if size % 512 == 0:
        return b""
    tag = _varint(PADDING_FIELD << 3 | 2)
    total = -size % 512
    while True:
        for length in (total - len(tag) - 1, total - len(tag) - 2):
            if length >= 0 and len(tag) + len(_varint(length)) + length == total:
                return tag + _varint(length) + bytes(length)
        total += 512


def _url(scheme: str, address: str) -> list[str]:
    return [f"{scheme}://{address}"] if address else []


def _address(url: str) -> str:
    """host:port of an etcd URL ("http://10.0.0.1:2380")."""
    rest = url.split("://", 1)[-1]
    return rest.rstrip("/")



async def _run(context: Any, work: Any) -> Any:
    try:
        return await work
    except (grpc.aio.AbortError, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - answered in etcd's terms
        await abort_etcd(context, exc)
        raise


async def _admin_only(calls: CoordCalls, method: str, request: Any, context: Any) -> None:
    """With auth on, only an admin may call ``method`` (it has no coord.v1 equivalent)."""
    calls.precheck(method, request, context)


class EtcdCluster(etcd_grpc.ClusterServicer):
    def __init__(self, node: Member, calls: CoordCalls, cluster: Any, relay: LeaderRelay) -> None:
        self.node = node
        self.calls = calls
        self.cluster = cluster
        """The member's ClusterService (its update_member has no coord.v1 RPC)."""
        self.relay = relay
        """Membership changes on a follower go to the leader, as etcd forwards them."""

    def member(self, m: cluster_pb2.Member) -> etcd.Member:
        scheme = "https" if self.node.config.client_tls else "http"
        return etcd.Member(
            ID=m.id, name=m.name, peerURLs=_url(scheme, m.peer_address), clientURLs=_url(scheme, m.client_address),
            isLearner=m.is_learner,
        )

    async def MemberList(self, request: etcd.MemberListRequest, context: Any) -> etcd.MemberListResponse:
        async def work() -> etcd.MemberListResponse:
            r = await self.calls.call(MEMBER_LIST, cluster_pb2.ClusterMemberListRequest(linearizable=request.linearizable), context)
            return etcd.MemberListResponse(header=convert.header(r.header), members=[self.member(m) for m in r.members])

        return await _run(context, work())  # type: ignore[no-any-return]

    async def MemberAdd(self, request: etcd.MemberAddRequest, context: Any) -> etcd.MemberAddResponse:
        """A voter, or a learner with ``isLearner``, as etcd adds them (with etcd's strict
        reconfiguration check for a voter: ClusterService Rule 4). It has no name until
        the new member starts and names itself (``--join``: Rule 5)."""
        leader = self.relay.leader_elsewhere(context)
        if leader:
            return await self.relay.call(leader, "MemberAdd", request, context)  # type: ignore[no-any-return]

        async def work() -> etcd.MemberAddResponse:
            coord_request = cluster_pb2.ClusterMemberAddRequest(
                peer_address=_address(request.peerURLs[0]) if request.peerURLs else "",
            )
            self.calls.precheck(MEMBER_ADD, coord_request, context)
            if len(request.peerURLs) != 1:
                raise errors.MEMBER_BAD_URLS
            r = await self.cluster.add_member(coord_request, CallContext(context), learner=request.isLearner)
            return etcd.MemberAddResponse(
                header=convert.header(r.header), member=self.member(r.member), members=[self.member(m) for m in r.members]
            )

        return await _run(context, work())  # type: ignore[no-any-return]

    async def MemberRemove(self, request: etcd.MemberRemoveRequest, context: Any) -> etcd.MemberRemoveResponse:
        leader = self.relay.leader_elsewhere(context)
        if leader:
            return await self.relay.call(leader, "MemberRemove", request, context)  # type: ignore[no-any-return]

        async def work() -> etcd.MemberRemoveResponse:
            r = await self.calls.call(MEMBER_REMOVE, cluster_pb2.ClusterMemberRemoveRequest(id=request.ID), context)
            return etcd.MemberRemoveResponse(header=convert.header(r.header), members=[self.member(m) for m in r.members])

        return await _run(context, work())  # type: ignore[no-any-return]

    async def MemberPromote(self, request: etcd.MemberPromoteRequest, context: Any) -> etcd.MemberPromoteResponse:
        leader = self.relay.leader_elsewhere(context)
        if leader:
            return await self.relay.call(leader, "MemberPromote", request, context)  # type: ignore[no-any-return]

        async def work() -> etcd.MemberPromoteResponse:
            r = await self.calls.call(MEMBER_PROMOTE, cluster_pb2.ClusterMemberPromoteRequest(id=request.ID), context)
            return etcd.MemberPromoteResponse(header=convert.header(r.header), members=[self.member(m) for m in r.members])

        return await _run(context, work())  # type: ignore[no-any-return]

    async def MemberUpdate(self, request: etcd.MemberUpdateRequest, context: Any) -> etcd.MemberUpdateResponse:
        """A member's one peer URL, through ClusterService.update_member (admins only)."""
        leader = self.relay.leader_elsewhere(context)
        if leader:
            return await self.relay.call(leader, "MemberUpdate", request, context)  # type: ignore[no-any-return]

        async def work() -> etcd.MemberUpdateResponse:
            await _admin_only(self.calls, "/etcdserverpb.Cluster/MemberUpdate", request, context)
            if len(request.peerURLs) != 1:
                raise errors.MEMBER_BAD_URLS
            members = await self.cluster.update_member(request.ID, _address(request.peerURLs[0]), CallContext(context))
            return etcd.MemberUpdateResponse(header=self._header(), members=[self.member(m) for m in members])

        return await _run(context, work())  # type: ignore[no-any-return]

    def _header(self) -> etcd.ResponseHeader:
        node = self.node
        return etcd.ResponseHeader(
            cluster_id=node.config.cluster_id, member_id=node.config.node_id,
            revision=node.state.revision, raft_term=node.term,
        )


class EtcdMaintenance(etcd_grpc.MaintenanceServicer):
    def __init__(self, node: Member, calls: CoordCalls) -> None:
        self.node = node
        self.calls = calls

    def _header(self) -> etcd.ResponseHeader:
        node = self.node
        return etcd.ResponseHeader(
            cluster_id=node.config.cluster_id, member_id=node.config.node_id,
            revision=node.state.revision, raft_term=node.term,
        )

    def _admit_whole_state(self, context: Any) -> None:
        """Hashes and snapshots read the whole state: admitted as coord's Snapshot is."""
        admission = self.calls.admission(context)
        if admission is not None:
            try:
                admission.check(SNAPSHOT, maintenance_pb2.MaintenanceSnapshotRequest())
            except Exception as exc:  # noqa: BLE001 - PermissionDenied, in etcd's terms
                raise errors.translate(as_coord_error(exc)) from None

    async def Status(self, request: etcd.StatusRequest, context: Any) -> etcd.StatusResponse:
        async def work() -> etcd.StatusResponse:
            r = await self.calls.call(STATUS, cluster_pb2.ClusterStatusRequest(), context)
            size = int(self.node.state.size_bytes)
            return etcd.StatusResponse(
                header=convert.header(r.header), version=ETCD_VERSION, dbSize=size, dbSizeInUse=size,
                leader=r.leader, raftIndex=r.commit_index, raftTerm=r.header.raft_term,
                raftAppliedIndex=r.applied_index, isLearner=r.is_learner,
            )

        return await _run(context, work())  # type: ignore[no-any-return]

    async def Alarm(self, request: etcd.AlarmRequest, context: Any) -> etcd.AlarmResponse:
        async def work() -> etcd.AlarmResponse:
            self.calls.precheck("/etcdserverpb.Maintenance/Alarm", request, context)
            return etcd.AlarmResponse(header=self._header())

        return await _run(context, work())  # type: ignore[no-any-return]

    async def Defragment(self, request: etcd.DefragmentRequest, context: Any) -> etcd.DefragmentResponse:
        async def work() -> etcd.DefragmentResponse:
            self.calls.precheck("/etcdserverpb.Maintenance/Defragment", request, context)
            return etcd.DefragmentResponse(header=self._header())

        return await _run(context, work())  # type: ignore[no-any-return]

    async def Hash(self, request: etcd.HashRequest, context: Any) -> etcd.HashResponse:
        async def work() -> etcd.HashResponse:
            self._admit_whole_state(context)
            return etcd.HashResponse(header=self._header(), hash=zlib.crc32(self.node.state.snapshot()))

        return await _run(context, work())  # type: ignore[no-any-return]

    async def HashKV(self, request: etcd.HashKVRequest, context: Any) -> etcd.HashKVResponse:
        """A CRC-32 of every key-value at ``revision`` (0: now): equal on members that
        applied the same history, as etcd's HashKV is meant to be compared."""

        async def work() -> etcd.HashKVResponse:
            self._admit_whole_state(context)
            state = self.node.state
            try:
                r = state.range(kv_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", revision=request.revision))
            except Exception as exc:  # noqa: BLE001 - compacted or future: etcd's messages
                raise errors.translate(as_coord_error(exc)) from None
            crc = 0
            for kv in r.kvs:
                crc = zlib.crc32(kv.SerializeToString(), crc)
            return etcd.HashKVResponse(
                header=self._header(), hash=crc, compact_revision=state.compact_revision,
                hash_revision=request.revision or state.revision,
            )

        return await _run(context, work())  # type: ignore[no-any-return]

    async def Snapshot(
        self, request: etcd.SnapshotRequest, context: Any
    ) -> AsyncIterator[etcd.SnapshotResponse]:
        """coord's snapshot bytes laid out as etcd lays out its own (etcdctl checks the
        layout): padded to a multiple of 512 bytes, then the SHA-256 of that. The padding
        is a field StateSnapshot never defines, so the file etcdctl saves is also a
        coord snapshot file (bytes, then their SHA-256): ``coord-server restore`` reads
        it as it is."""
        try:
            self._admit_whole_state(context)
            data = self.node.state.snapshot()
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_etcd(context, exc)
            return
        padded = data + snapshot_padding(len(data))
        blob = padded + hashlib.sha256(padded).digest()
        header = self._header()
        offset = 0
        while offset < len(blob):
            chunk = blob[offset : offset + SNAPSHOT_CHUNK]
            offset += len(chunk)
            yield etcd.SnapshotResponse(header=header, remaining_bytes=len(blob) - offset, blob=chunk, version=ETCD_VERSION)

    async def Downgrade(self, request: etcd.DowngradeRequest, context: Any) -> etcd.DowngradeResponse:
        await _run(context, _admin_only(self.calls, "/etcdserverpb.Maintenance/Downgrade", request, context))
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "coord has no cluster version to downgrade")
        raise AssertionError("not reached")

    async def MoveLeader(self, request: etcd.MoveLeaderRequest, context: Any) -> etcd.MoveLeaderResponse:
        async def work() -> etcd.MoveLeaderResponse:
            if request.targetID == 0:
                raise errors.BAD_LEADER_TRANSFEREE
            try:
                r = await self.calls.call(
                    TRANSFER, cluster_pb2.ClusterTransferLeadershipRequest(target_id=request.targetID), context
                )
            except errors.EtcdError as err:
                # etcd calls any target that is not a voting member a bad transferee.
                raise errors.BAD_LEADER_TRANSFEREE if err is errors.MEMBER_NOT_FOUND else err from None
            return etcd.MoveLeaderResponse(header=convert.header(r.header))

        return await _run(context, work())  # type: ignore[no-any-return]

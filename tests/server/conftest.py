"""In-process coord clusters for service tests, and a runner for ``async def`` tests.

A test asks for the ``cluster`` fixture (one member by default) and is written as
``async def``; it runs on a fresh event loop with the cluster already started on it:

    async def test_put(cluster):
        kv = cluster.kv()                     # a KV stub on a real grpc.aio channel
        await kv.Put(kv_pb2.PutRequest(key=b"a", value=b"1"))

``@pytest.mark.cluster(size=3, progress_interval=0.2, ...)`` changes the cluster: the
number of members and any WatchHub or NodeConfig setting (see ``InProcessCluster``).
Every member is real: a Node with the real state machine and DiskStorage (in tmp_path),
a PeerTransport, and one grpc.aio server on 127.0.0.1:0 carrying the public services
(``coord_server.services.add_services``) and the Raft peer service.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from coord.raft.v1 import command_pb2, raft_pb2_grpc
from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2_grpc, lease_pb2_grpc
from coord_server.node import Node, NodeConfig
from coord_server.coord_hub import CoordHub
from coord_server.member import NodeMember
from coord_server.services import UnaryBatcher, add_services
from coord_server.settings import cluster_id_of, member_id_of
from coord_server.storage import DiskStorage
from coord_server.transport import PeerTransport, RaftPeerService
from coord_server.transport.grpc_peer import SERVER_OPTIONS
from coord_server.watch import WatchHub

TEST_TIMEOUT = 60.0

_NODE_SETTINGS = {f.name for f in __import__("dataclasses").fields(NodeConfig)} - {"node_id", "cluster_id", "name", "client_address"}
_HUB_SETTINGS = {"progress_interval", "max_pending_events", "max_pending_bytes", "max_response_bytes", "leaderless_timeout"}


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait until ``predicate()`` is truthy (polling every 10 ms); its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Member:
    name: str
    id: int
    address: str
    data_dir: str
    server: grpc.aio.Server
    node: Node | None = None
    transport: PeerTransport | None = None
    storage: DiskStorage | None = None
    hub: WatchHub | None = None
    member: NodeMember | None = None
    """What the services see of ``node`` (coord_server/member.py)."""
    channel: grpc.aio.Channel | None = None

    def kv(self) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(self._channel())

    def lease(self) -> lease_pb2_grpc.LeaseStub:
        return lease_pb2_grpc.LeaseStub(self._channel())

    def cluster(self) -> cluster_pb2_grpc.ClusterStub:
        return cluster_pb2_grpc.ClusterStub(self._channel())

    def _channel(self) -> grpc.aio.Channel:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address)
        return self.channel


@dataclass
class InProcessCluster:
    """``size`` members on this loop; start with ``async with``."""

    root: str
    size: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    async def __aenter__(self) -> InProcessCluster:
        names = [f"m{i}" for i in range(1, self.size + 1)]
        servers = {}
        addresses = {}
        for name in names:
            server = grpc.aio.server(options=SERVER_OPTIONS)
            port = server.add_insecure_port("127.0.0.1:0")
            servers[name] = server
            addresses[name] = f"127.0.0.1:{port}"
        cluster_id = cluster_id_of(addresses)
        infos = {
            member_id_of(cluster_id, n): command_pb2.MemberInfo(
                id=member_id_of(cluster_id, n), name=n, peer_address=addresses[n], client_address=addresses[n]
            )
            for n in names
        }
        for name in names:
            self.members.append(
                self._build(name, addresses[name], servers[name], cluster_id, member_id_of(cluster_id, name),
                            bootstrap=infos)
            )
        for m in self.members:
            await m.server.start()
        for m in self.members:
            assert m.node is not None
            await m.node.start()
        await self.wait_leader()
        return self

    def _build(
        self,
        name: str,
        address: str,
        server: grpc.aio.Server,
        cluster_id: int,
        member_id: int,
        bootstrap: dict[int, command_pb2.MemberInfo] | None = None,
        known: dict[int, command_pb2.MemberInfo] | None = None,
    ) -> Member:
        node_settings = {k: v for k, v in self.settings.items() if k in _NODE_SETTINGS}
        hub_settings = {k: v for k, v in self.settings.items() if k in _HUB_SETTINGS}
        data_dir = os.path.join(self.root, name)
        m = Member(name, member_id, address, data_dir, server)
        m.storage = DiskStorage(data_dir, cluster_id=cluster_id, preallocate=False)
        m.transport = PeerTransport(
            cluster_id,
            on_unreachable=lambda nid: m.node.report_unreachable(nid) if m.node else None,
            on_snapshot_status=lambda nid, failed: m.node.report_snapshot(nid, failed) if m.node else None,
        )
        config = NodeConfig(node_id=member_id, cluster_id=cluster_id, name=name, client_address=address, **node_settings)
        m.node = Node(config, m.storage, m.transport, bootstrap_members=bootstrap, known_members=known)
        m.hub = WatchHub(m.node, **hub_settings)
        m.member = NodeMember(m.node, m.hub, CoordHub(m.node), UnaryBatcher)
        forward = add_services(m.server, m.member)
        raft_pb2_grpc.add_RaftServicer_to_server(RaftPeerService(cluster_id, member_id, m.node.step, forward), m.server)
        return m

    async def add_member(self, name: str, start: bool = True) -> Member:
        """Add a member as a learner through the leader's MemberAdd, and start it (its
        gRPC server always; its node unless ``start`` is False: call ``start_node``)."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        leader = self.leader()
        added = await leader.cluster().MemberAdd(
            cluster_pb2.ClusterMemberAddRequest(name=name, peer_address=address, client_address=address), timeout=10
        )
        known = {
            x.id: command_pb2.MemberInfo(id=x.id, name=x.name, peer_address=x.peer_address, client_address=x.client_address)
            for x in added.members
        }
        assert leader.node is not None
        m = self._build(name, address, server, leader.node.config.cluster_id, added.member.id, known=known)
        self.members.append(m)
        await server.start()
        if start:
            await self.start_node(m)
        return m

    async def start_node(self, m: Member) -> None:
        assert m.node is not None
        await m.node.start()

    async def __aexit__(self, *exc: object) -> None:
        for m in self.members:
            await self._stop_member(m)

    async def _stop_member(self, m: Member) -> None:
        if m.channel is not None:
            await m.channel.close()
            m.channel = None
        if m.member is not None:
            await m.member.watch_hub.close()
            await m.member.coord_hub.close()
        await m.server.stop(0)
        if m.node is not None:
            await m.node.stop()
        if m.transport is not None:
            await m.transport.close()
        if m.storage is not None:
            m.storage.close()

    # -------------------------------------------------------------- conveniences

    def leader(self) -> Member:
        for m in self.members:
            if m.node is not None and m.node.is_leader:
                return m
        raise AssertionError("no leader")

    def followers(self) -> list[Member]:
        return [m for m in self.members if m.node is not None and not m.node.is_leader]

    async def wait_leader(self, timeout: float = 15.0) -> Member:
        def agreed() -> Member | None:
            leaders = [m for m in self.members if m.node is not None and m.node.is_leader]
            if len(leaders) != 1:
                return None
            lid = leaders[0].id
            if all(m.node is not None and m.node.leader_id == lid for m in self.members):
                return leaders[0]
            return None

        return await eventually(agreed, timeout, "a leader every member knows")  # type: ignore[no-any-return]

    @property
    def node(self) -> Node:
        assert self.members[0].node is not None
        return self.members[0].node

    @property
    def member(self) -> NodeMember:
        """What the services of the first member see of it."""
        assert self.members[0].member is not None
        return self.members[0].member

    @property
    def address(self) -> str:
        return self.members[0].address

    def kv(self, member: Member | None = None) -> kv_pb2_grpc.KVStub:
        return (member or self.members[0]).kv()

    def lease(self, member: Member | None = None) -> lease_pb2_grpc.LeaseStub:
        return (member or self.members[0]).lease()

    def cluster(self, member: Member | None = None) -> cluster_pb2_grpc.ClusterStub:
        return (member or self.members[0]).cluster()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Any) -> InProcessCluster:
    """An in-process cluster, started on the test's event loop (see the module docstring)."""
    marker = request.node.get_closest_marker("cluster")
    kwargs = dict(marker.kwargs) if marker else {}
    size = kwargs.pop("size", 1)
    return InProcessCluster(str(tmp_path), size=size, settings=kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster(size=1, **settings): configure the in-process cluster fixture")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh loop, entering InProcessCluster fixtures first."""
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames  # noqa: SLF001 - the arguments the test takes
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for value in kwargs.values():
                if isinstance(value, InProcessCluster):
                    await stack.enter_async_context(value)
            await asyncio.wait_for(_call(fn, kwargs), TEST_TIMEOUT)

    asyncio.run(main())
    return True


async def _call(fn: Callable[..., Awaitable[None]], kwargs: dict[str, Any]) -> None:
    await fn(**kwargs)

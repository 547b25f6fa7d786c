"""Wiring of one coord member: storage, node, peer transport, gRPC services.

``CoordServer.start()`` opens the data directory (refusing one of another cluster), finds
this member's identity (founding member, restarted member, or joiner), starts the node
and serves every service on one gRPC port: the public coord.v1 services, the internal
coord.raft.v1 Raft service, grpc.health.v1 and server reflection. With ``peer_listen``
(always with TLS) the Raft service moves to a second port of its own, with health.

Every service goes through ``RecordingServer`` (coord_server/registry.py), so
``registries`` says what each port serves, and every port has the admission interceptor,
which applies the access rule of each service (coord_server/auth/rules.py) and checks
peer calls with that port's PeerGuard; docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coord.raft.v1 import command_pb2, raft_pb2_grpc
from coord.v1 import cluster_pb2, cluster_pb2_grpc
from coord_server import http as http_surfaces
from coord_server.coord_hub import CoordHub
from coord_server.gc_policy import GcPolicy
from coord_server.loop_lag import LoopLag
from coord_server.logs import set_term_source
from coord_server.member import NodeMember, transfer_target
from coord_server.node import LOST_LEADER_SECONDS, Node, NodeConfig
from coord_server.request_context import RequestInterceptor
from coord_server.self_naming import SelfNaming
from coord_server.settings import ServerSettings, SettingsError, cluster_id_of, member_id_of
from coord_server.storage import DiskStorage, FileIO
from coord_server.storage.files import write_file_atomically
from coord_server.registry import RecordingServer
from coord_server.transport.peer_auth import PeerCredentials, PeerGuard, member_names
from coord_server.tls_reload import CertificateWatcher, client_listener, peer_listener
from coord_server.tls import ClientListenerTLS, PeerTLS
from coord_server.transport import PeerTransport, RaftPeerService
from coord_server.services import UnaryBatcher
from coord_server.services.common import SERVER_OPTIONS as PUBLIC_SERVER_OPTIONS
from coord_server.transport.grpc_peer import SERVER_OPTIONS
from coord_server.watch import WatchHub

log = logging.getLogger("coord.server")

IDENTITY_FILE = "member.json"
"""In the data directory: this member's name, id and cluster id, written once."""


class CoordServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.node: Node | None = None
        self.member: NodeMember | None = None
        """What the services see of ``node`` (coord_server/member.py)."""
        self.grpc_server: grpc.aio.Server | None = None
        self.transport: PeerTransport | None = None
        self.storage: Any = None
        self.port = 0
        self.metrics: Any = None
        """NodeMetrics when --metrics-listen is set (coord_server/metrics.py)."""
        self.metrics_server: Any = None
        self.peer_server: grpc.aio.Server | None = None
        self.peer_port = 0
        self.gc_policy: GcPolicy | None = None
        self.loop_lag: LoopLag | None = None
        self.http: Any = None
        """HttpListener when --http-listen is set (coord_server/http)."""
        self.auth_bootstrap: asyncio.Task[None] | None = None
        """Proposes the auth file as the cluster's first auth state (auth/bootstrap.py)."""
        self._http_loopback: Any = None
        """How the HTTP listener reaches this member's services (coord_server/http/loopback.py)."""
        self.registries: dict[str, RecordingServer] = {}
        """"client" (and "peer" with peer_listen) -> what that port serves."""
        self.health: Any = None
        """MemberHealth: grpc.health.v1 kept up to date (coord_server/health.py)."""
        self.certificates: CertificateWatcher | None = None
        """Reloads the TLS listeners' files when they change or on SIGHUP."""
        self.removal: Any = None
        """RemovalWatch: notices this member's removal from the cluster (coord_server/removal.py)."""
        self.self_naming: SelfNaming | None = None
        """Names this member if etcd's MemberAdd added it unnamed (coord_server/self_naming.py)."""

    async def start(self) -> None:
        s = self.settings
        client_tls, peer_tls = s.client_tls, s.peer_tls
        os.makedirs(s.data_directory, exist_ok=True)
        identity = _read_identity(s.data_directory)
        initial_members: dict[int, command_pb2.MemberInfo] | None = None
        founders: dict[str, str] = {}
        if identity is not None:
            cluster_id, member_id = identity["cluster_id"], identity["member_id"]
            if identity["name"] != s.name:
                raise SettingsError(
                    f"data directory {s.data_directory} belongs to member {identity['name']!r}, not {s.name!r}"
                )
            founders = identity.get("initial_cluster") or {}
            known_peers = identity.get("join_peers") or {}
            known_clients = identity.get("join_clients") or {}
            if not founders and known_peers:
                initial_members = {
                    int(mid): command_pb2.MemberInfo(
                        id=int(mid), peer_address=addr, client_address=known_clients.get(mid, addr)
                    )
                    for mid, addr in known_peers.items()
                }
        elif s.join:
            cluster_id, member_id, initial_members = await _join(s, peer_tls)
        else:
            founders = s.members
            cluster_id = cluster_id_of(founders)
            member_id = member_id_of(cluster_id, s.name)
        if founders:
            # Peer and client addresses are the same unless peers have a listener of their
            # own (identity files written before peer_listen existed hold no clients).
            clients = s.member_clients if identity is None else (identity.get("initial_cluster_clients") or founders)
            initial_members = {
                member_id_of(cluster_id, name): command_pb2.MemberInfo(
                    id=member_id_of(cluster_id, name), name=name, peer_address=address,
                    client_address=clients.get(name, address),
                )
                for name, address in founders.items()
            }
        # One snapshot file: an older one is never used again, and doubled the disk use.
        opening = time.monotonic()
        self.storage = DiskStorage(s.data_directory, cluster_id=cluster_id, keep_snapshots=1)
        opened = time.monotonic()
        if identity is None:
            # The founding membership is kept with the identity: a founder that crashed
            # before its bootstrap entries reached the disk must bootstrap again on
            # restart, not come back empty (it would elect itself alone and overwrite
            # the cluster's committed entries; found by tests/sim).
            _write_identity(
                s.data_directory,
                {
                    "name": s.name, "member_id": member_id, "cluster_id": cluster_id, "initial_cluster": founders,
                    "initial_cluster_clients": s.member_clients if founders else {},
                    # A joiner remembers where the members were when it joined, to reach
                    # them again after a restart that comes before its log says so.
                    "join_peers": {str(mid): info.peer_address for mid, info in (initial_members or {}).items()}
                    if not founders else {},
                    "join_clients": {str(mid): info.client_address for mid, info in (initial_members or {}).items()}
                    if not founders else {},
                },
            )
        self.transport = PeerTransport(
            cluster_id,
            on_unreachable=lambda nid: self.node.report_unreachable(nid) if self.node else None,
            on_snapshot_status=lambda nid, failed: self.node.report_snapshot(nid, failed) if self.node else None,
            on_corrupt=lambda err: self.node.fail(err) if self.node else None,
            credentials=peer_tls.channel_credentials() if peer_tls is not None else None,
            metadata=PeerCredentials(member_id, s.peer_secret).metadata,
        )
        config = NodeConfig(
            node_id=member_id,
            cluster_id=cluster_id,
            name=s.name,
            client_address=s.advertise_address,
            tick_interval=s.tick_ms / 1000,
            heartbeat_ticks=s.heartbeat_ms // s.tick_ms,
            election_ticks=s.election_ms // s.tick_ms,
            lost_leader_ticks=max(1, round(LOST_LEADER_SECONDS * 1000 / s.tick_ms)),
            snapshot_entries=s.snapshot_entries,
            snapshot_catchup_entries=max(50, s.snapshot_entries // 2),
            peer_overrides=dict(s.peer_overrides),
            client_tls=client_tls is not None,
        )
        # The node bootstraps only if its log is empty (a fresh founder, or one that crashed
        # before the bootstrap was persisted); a joiner never does.
        bootstrap = initial_members if founders else None
        known = initial_members if not founders else None
        node = Node(config, self.storage, self.transport, bootstrap_members=bootstrap, known_members=known)
        self.node = node
        log.info(
            "recovered in %.2f s: log and snapshot file %.2f s, state of %.0f MB %.2f s; %d log entries to apply",
            time.monotonic() - opening, opened - opening, node.state.size_bytes / 1e6, time.monotonic() - opened,
            self.storage.hard_state.commit - node.applied_index,
        )
        set_term_source(lambda: node.core.term)
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if s.metrics_listen:
            from coord_server.metrics import NodeMetrics

            self.metrics = node.metrics = NodeMetrics(node)
            self.transport.on_heartbeat_sent = self.metrics.on_heartbeat_sent
        if self.metrics is not None or s.log_format == "json":
            # Outermost: it also counts and logs what admission refuses.
            interceptors.append(RequestInterceptor(self.metrics.grpc_requests if self.metrics is not None else None))
        from coord_server.auth import build_interceptor
        from coord_server.health import MemberHealth
        from coord_server.removal import RemovalWatch, RemovedInterceptor

        # What the services see of this member (coord_server/member.py): the node behind a
        # typed face, with the hubs that feed waiting calls and streams.
        watch_hub = WatchHub(node)
        watch_hub.max_watchers_per_stream = s.max_watches_per_stream
        if self.metrics is not None:
            self.metrics.attach_watch_hub(watch_hub)
        member = self.member = NodeMember(
            node, watch_hub, CoordHub(node), UnaryBatcher,
            # Auth.Enable refuses while this member's peer service would accept anyone.
            peers_authenticated=bool(s.peer_secret_file or (s.peer_listen and s.peer_cert_file)),
        )
        self.removal = RemovalWatch(node, s.name)
        interceptors.append(RemovedInterceptor(self.removal))
        name_of = member_names(node, initial_members)
        secret = s.peer_secret
        client_guard = PeerGuard(secret, name_of, check_names=False) if secret is not None else None
        admission = build_interceptor(s, member, client_guard)
        # With a peer port of its own, the client port serves only the public API and
        # gets its receive limit; otherwise it also carries Raft, with the peers' limits.
        client_options = PUBLIC_SERVER_OPTIONS if s.peer_listen else SERVER_OPTIONS
        server = RecordingServer(
            grpc.aio.server(options=client_options, interceptors=[*interceptors, admission]),
            "client",
        )
        self.registries["client"] = server
        from coord_server.services import add_services  # looked up now: tests add a service

        forward = add_services(server, member)
        from coord_server.etcd import add_etcd_services

        transport = self.transport
        add_etcd_services(  # etcd's v3 API (docs/etcd.md)
            server, member, admission, lambda: transport.credentials, client_tls=bool(s.cert_file),
        )
        raft_service = RaftPeerService(cluster_id, member_id, node.step, forward, link_lost=node.peer_link_lost)
        self.health = MemberHealth(node)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        peer_tls_listener = None
        if s.peer_listen:
            # Peers get a port of their own serving Raft and health only; the client
            # port no longer carries Raft (with TLS, only peer certificates reach it).
            peer_guard = (
                PeerGuard(secret, name_of, check_names=peer_tls is not None)
                if secret is not None or peer_tls is not None else None
            )
            peer_server = RecordingServer(
                grpc.aio.server(options=SERVER_OPTIONS, interceptors=[*interceptors, build_interceptor(s, member, peer_guard)]),
                "peer",
            )
            self.registries["peer"] = peer_server
            raft_pb2_grpc.add_RaftServicer_to_server(raft_service, peer_server)
            health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, peer_server)
            peer_tls_listener = peer_listener(s, self.transport)
            self.peer_port = _add_port(peer_server, "peer_listen", s.peer_listen, peer_tls_listener)
            self.peer_server = peer_server
        else:
            raft_pb2_grpc.add_RaftServicer_to_server(raft_service, server)
        # Reflection describes exactly what this port registered (and itself).
        reflection.enable_server_reflection([*server.services(), reflection.SERVICE_NAME], server)
        client_tls_listener = client_listener(s)
        self.port = _add_port(server, "listen", s.listen, client_tls_listener)
        self.certificates = CertificateWatcher(
            [tls for tls in (client_tls_listener, peer_tls_listener) if tls is not None]
        )
        if s.http_listen:
            from coord_server.http.loopback import bind_loopback

            self._http_loopback = bind_loopback(
                server, self.port, tls=client_tls is not None, data_dir=s.data_directory)
        # Before serving anything: a metrics port that is taken stops the start-up.
        if self.metrics is not None:
            from coord_server.metrics_http import MetricsServer

            self.metrics_server = MetricsServer(self.metrics.registry, s.metrics_listen)
            await self.metrics_server.start()
        if self.peer_server is not None:
            await self.peer_server.start()
        await server.start()
        self.grpc_server = server
        if s.http_listen:
            self.http = _http_listener(s, self._http_loopback)
            if client_tls_listener is not None:  # HTTPS follows the client port's reloads
                client_tls_listener.on_reload = lambda *_: self.http.reload_tls(s.cert_file, s.key_file, s.client_ca_file)
            await self.http.start()
        # A complete collection pauses for ~1 s per million objects: not on a leader
        # that has followers to lose (gc_policy.py Rule 4).
        self.gc_policy = GcPolicy(may_pause=lambda: not node.is_leader or node.core.voters == {node.id})
        self.gc_policy.start()  # after recovery, before the Raft clock runs: one full collection
        self.loop_lag = LoopLag()
        if self.metrics is not None:
            self.metrics.attach_loop_lag(self.loop_lag)
        self.loop_lag.start()
        await node.start()
        self.self_naming = SelfNaming(
            node, lambda: _join(s, peer_tls, adopt_unnamed=False, target=s.join or node.leader_address())
        )
        self.self_naming.start()
        self.health.start(self.registries)
        self.certificates.start()
        self.removal.start()
        from coord_server.auth.bootstrap import start_bootstrap

        self.auth_bootstrap = start_bootstrap(member, s.auth)  # the auth file as the first auth state
        log.info(
            "member %s (%#x) of cluster %#x serving clients on %s%s%s, data in %s",
            s.name, member_id, cluster_id, s.listen, " (TLS)" if client_tls else "",
            f", peers on {s.peer_listen}" + (" (mutual TLS)" if peer_tls else "") if s.peer_listen else "",
            s.data_directory,
        )

    def reload_certificates(self) -> None:
        """SIGHUP: read every certificate, key and CA file again (tls_reload.py)."""
        if self.certificates is not None:
            self.certificates.reload_all()

    async def stop(self, grace: float = 2.0) -> None:
        if self.self_naming is not None:
            await self.self_naming.stop()
        if self.auth_bootstrap is not None:
            self.auth_bootstrap.cancel()
        if self.removal is not None:
            await self.removal.stop()
        if self.certificates is not None:
            await self.certificates.stop()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.http is not None:
            await self.http.close()
        if self._http_loopback is not None:
            self._http_loopback.close()
        if self.health is not None:
            await self.health.stop()
        await self._hand_over_leadership()
        if self.member is not None:
            # Open streams (watches, observers, lock waiters) end now rather than holding
            # the shutdown for the whole grace period.
            await self.member.watch_hub.close()
            await self.member.coord_hub.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace)
        if self.peer_server is not None:
            await self.peer_server.stop(grace)
        if self.node is not None:
            await self.node.stop()
        if self.transport is not None:
            await self.transport.close()
        if self.storage is not None:
            self.storage.close()
        if self.gc_policy is not None:
            await self.gc_policy.stop()
        if self.loop_lag is not None:
            await self.loop_lag.stop()

    async def _hand_over_leadership(self) -> None:
        """A leader that is asked to stop first hands leadership to its most up-to-date
        voter (as etcd does). Otherwise it would keep heartbeating through the grace period,
        so nobody could elect a new leader and writes would stall for the whole shutdown,
        longer than after a crash. Bounded by a few election timeouts; best effort."""
        node = self.node
        if node is None or node.failed is not None or not node.is_leader:
            return
        target = transfer_target(node)
        if target is None:
            return
        try:
            node.transfer_leadership(target)
        except Exception as err:  # noqa: BLE001 - stopping anyway
            log.warning("could not hand leadership over before stopping: %s", err)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * node.config.election_timeout
        while node.leader_id != target and loop.time() < deadline:
            await asyncio.sleep(node.config.tick_interval)
        log.info("stopping: leadership %s to %#x", "handed over" if node.leader_id == target else "not handed over in time", target)


class _ServerTLS(Protocol):
    """A listener's TLS material (tls.py, or tls_reload.py's reloading kind)."""

    def server_credentials(self) -> grpc.ServerCredentials: ...


def _add_port(server: grpc.aio.Server, label: str, address: str, tls: _ServerTLS | None) -> int:
    """Bind ``address`` (with TLS when given); a clear SettingsError when it cannot be bound."""
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.server_credentials())
    if port == 0:
        raise SettingsError(f"cannot listen on {address} ({label}): the address is in use or not local")
    return port


HTTP_SURFACES: list[Any] = [
    http_surfaces.connect_surface, http_surfaces.dashboard_surface, http_surfaces.etcd_gateway_surface,
]
"""The ``add_routes(app, ctx)`` functions the HTTP listener serves (coord_server/http)."""


def _http_listener(s: ServerSettings, loopback: Any) -> Any:
    """The HTTP listener (HTTPS with the client listener's certificate when it has TLS),
    calling this member's services over ``loopback`` (coord_server/http/loopback.py)."""
    from coord_server.http.listener import HttpListener, server_ssl_context

    ssl_context = server_ssl_context(s.cert_file, s.key_file, s.client_ca_file) if s.cert_file else None
    peer_tls = s.peer_tls if s.cert_file else None
    credentials = peer_tls.channel_credentials() if peer_tls is not None else None
    return HttpListener(s.http_listen, loopback.channel(), HTTP_SURFACES, ssl_context, credentials)


def _read_identity(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, IDENTITY_FILE)
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise SettingsError(f"{path} is unreadable ({err}); the data directory is damaged") from None
    if not {"name", "member_id", "cluster_id"} <= set(data):
        raise SettingsError(f"{path} lacks name, member_id or cluster_id; the data directory is damaged")
    return data


def _write_identity(directory: str, data: dict[str, Any]) -> None:
    """Durably, as every file of the data directory is written (storage/files.py)."""
    write_file_atomically(FileIO(), directory, IDENTITY_FILE, [json.dumps(data).encode()])


def _join_metadata() -> tuple[tuple[str, str], ...]:
    """A joiner asks for MemberAdd like any client: on a cluster with auth on it needs an
    admin's token, taken from $COORD_TOKEN (docs/security.md)."""
    token = os.environ.get("COORD_TOKEN", "")
    return (("authorization", f"Bearer {token}"),) if token else ()


async def _join(
    s: ServerSettings, peer_tls: PeerTLS | None, *, adopt_unnamed: bool = True, target: str = ""
) -> tuple[int, int, dict[int, command_pb2.MemberInfo]]:
    """Ask a live member for the cluster, adding this member as a learner if it is not
    there yet; returns (cluster id, member id, the members' addresses). With
    ``adopt_unnamed``, an unnamed member at this peer address (added by etcd's
    MemberAdd) is this one, taken as it is: no commit is needed to start, even where
    the cluster needs this member for a quorum; it names itself later (self_naming.py).
    Without, that member is completed with this one's name (the naming itself).

    ``join`` (or ``target``) is a member's client address; with TLS the joiner connects
    to it with its peer certificate and trusts the peer CA (docs/security.md)."""
    deadline = asyncio.get_running_loop().time() + 30
    target = target or s.join
    last_error = ""
    while asyncio.get_running_loop().time() < deadline:
        channel = (
            grpc.aio.secure_channel(target, peer_tls.channel_credentials())
            if peer_tls is not None and s.client_tls is not None else grpc.aio.insecure_channel(target)
        )
        async with channel:
            stub = cluster_pb2_grpc.ClusterStub(channel)
            try:
                try:
                    listing = await stub.MemberList(
                        cluster_pb2.ClusterMemberListRequest(linearizable=True), timeout=5, metadata=_join_metadata()
                    )
                except grpc.aio.AioRpcError as err:
                    if not adopt_unnamed or err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    # No quorum for a linearizable read: perhaps it waits for this member.
                    listing = await stub.MemberList(
                        cluster_pb2.ClusterMemberListRequest(), timeout=5, metadata=_join_metadata()
                    )
                mine = [m for m in listing.members if m.name == s.name]
                unnamed = [m for m in listing.members if not m.name and m.peer_address == s.peer_advertise_address]
                if mine:
                    member = mine[0]
                    members = listing.members
                elif adopt_unnamed and unnamed:
                    member = unnamed[0]
                    members = listing.members
                else:
                    added = await stub.MemberAdd(
                        cluster_pb2.ClusterMemberAddRequest(
                            name=s.name, peer_address=s.peer_advertise_address, client_address=s.advertise_address
                        ),
                        timeout=10,
                        metadata=_join_metadata(),
                    )
                    member = added.member
                    members = added.members
                infos = {
                    m.id: command_pb2.MemberInfo(
                        id=m.id, name=m.name, peer_address=m.peer_address, client_address=m.client_address
                    )
                    for m in members
                }
                return listing.header.cluster_id, member.id, infos
            except grpc.aio.AioRpcError as err:
                last_error = f"{err.code().name}: {err.details()}"
                leader = dict(err.trailing_metadata() or ()).get("coord-leader")
                if err.code() == grpc.StatusCode.UNAVAILABLE and leader:
                    target = str(leader)
                    continue
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    break
        log.info("joining through %s failed (%s); retrying", target, last_error)
        await asyncio.sleep(0.5)
    raise SettingsError(f"cannot join the cluster through {s.join}: {last_error or 'no answer'}")

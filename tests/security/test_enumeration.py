"""Every method on every port of a running member, called by strangers: the test that
cannot go stale.

A real member (``CoordServer`` with auth on; tests/security/inprocess.py) is started in
each layout: one port; a separate peer port; a peer port with mutual TLS and client TLS.
The methods come from what the server itself registered on each port
(``CoordServer.registries``, coord_server/registry.py), never from a list kept here, so
a service added to a member is called here the day it is added. Each method is called

- without credentials (no token, no peer secret; on TLS ports with the CA's client
  certificate, which names no member), and
- with the token of a user whose role grants nothing,

with a request whose every field is set (and, for the peer service, the real attacks:
a forwarded PROPOSE of a Put, a Send with another cluster's id, a snapshot). Each must
answer UNAUTHENTICATED or PERMISSION_DENIED, name no cluster or member id, and change
nothing; except the OPEN services of coord_server/auth/rules.py (health, reflection),
and, for the role that grants nothing, the calls the requirements table opens to any
authenticated user (Lease Grant/KeepAlive/TimeToLive/List, Cluster Status/MemberList;
Pipeline answers each op with its own PERMISSION_DENIED). Every registered method must
have an explicit rule: a new RPC without one fails here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool

from coord.raft.v1 import command_pb2, raft_pb2
from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc
from coord_server.auth.requirements import any_authenticated_user, has_rule
from coord_server.auth.rules import Access, access_of, service_of
from coord_server.etcd import COORD_EQUIVALENTS
from coord_server.registry import OPAQUE
from tests.integration.harness import free_ports

from .conftest import AUTH_FILE, PEER_SECRET, TOKENS, write_peer_secret
from .inprocess import MemberThread
from .messages import filled
from .tls_cluster import make_certs

pytestmark = pytest.mark.slow

NOBODY_TOKEN = "nobody-token-0123456789"
NOTHING_ROLE = """
[roles.nothing]

[users.nobody]
token = "%s"
roles = ["nothing"]
""" % NOBODY_TOKEN
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
CALL_TIMEOUT = 5.0
REPORT = os.environ.get("COORD_ENUMERATION_REPORT", "")
"""When set, a JSON file each layout appends its table of answers to (for reports)."""


def write_auth(directory: Path) -> Path:
    from coord_server.auth import token_digest

    path = directory / "auth.toml"
    path.write_text(AUTH_FILE % {
        "root": token_digest(TOKENS["root"]), "reader": TOKENS["reader"],
        "writer_a": token_digest(TOKENS["writer_a"]), "lockers": TOKENS["lockers"],
    } + NOTHING_ROLE)
    return path


LAYOUTS = ["single-port", "peer-port", "peer-port-tls", "peer-port-tls-and-secret"]


@pytest.fixture(scope="module", params=LAYOUTS)
def member(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, MemberThread, Any]]:
    layout: str = request.param
    base = tmp_path_factory.mktemp(layout)
    client_port, peer_port = free_ports(2)
    argv = [
        "--name", "n1", "--data-dir", str(base / "data"), "--listen", f"127.0.0.1:{client_port}",
        "--auth-file", str(write_auth(base)),
    ]
    certs = None
    if layout != "single-port":
        argv += ["--peer-listen", f"127.0.0.1:{peer_port}"]
    if layout in ("single-port", "peer-port", "peer-port-tls-and-secret"):
        argv += ["--peer-secret-file", str(write_peer_secret(base))]
    if layout.startswith("peer-port-tls"):
        certs = make_certs(base / "certs", ("n1", "n2"))
        cert, key, ca = certs / "n1.pem", certs / "n1-key.pem", certs / "ca.pem"
        argv += ["--cert-file", str(cert), "--key-file", str(key), "--client-ca-file", str(ca),
                 "--peer-cert-file", str(cert), "--peer-key-file", str(key), "--peer-ca-file", str(ca)]
    m = MemberThread(argv).start()
    try:
        yield layout, m, certs
    finally:
        m.stop()


def channel_to(m: MemberThread, port: str, certs: Path | None, cert_name: str = "client") -> grpc.Channel:
    address = f"127.0.0.1:{m.server.port if port == 'client' else m.server.peer_port}"
    if certs is None:
        return grpc.insecure_channel(address)
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{cert_name}-key.pem").read_bytes(),
        certificate_chain=(certs / f"{cert_name}.pem").read_bytes(),
    )
    return grpc.secure_channel(address, creds)


# ---------------------------------------------------------------------------- requests


def attack(method: str, cluster_id: int) -> bytes | None:
    """The peer service's real attacks (None: a filled message will do)."""
    put = command_pb2.Command(put=kv_pb2.PutRequest(key=b"enum-probe/forwarded", value=b"owned"))
    if method == "/coord.raft.v1.Raft/Forward":
        return raft_pb2.ForwardRequest(
            cluster_id=cluster_id, kind=raft_pb2.FORWARD_KIND_PROPOSE, payload=put.SerializeToString(), id=1,
        ).SerializeToString()
    if method == "/coord.raft.v1.Raft/Send":
        return raft_pb2.RaftEnvelope(cluster_id=cluster_id + 1).SerializeToString()
    return None


def request_bytes(method: str, cluster_id: int) -> bytes:
    special = attack(method, cluster_id)
    if special is not None:
        return special
    service, _, name = method.lstrip("/").partition("/")
    try:
        desc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return b"enum-probe"  # a service without a .proto in this process: any bytes
    return filled(desc.input_type).SerializeToString()  # type: ignore[no-any-return]


def call(channel: grpc.Channel, method: str, handler: Any, payload: bytes, metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str, list[bytes]]:
    """(status, details, responses) of one call of ``method`` with one request message,
    in the call shape the server registered (``handler``)."""
    client_streaming = handler.stream_unary is not None or handler.stream_stream is not None
    server_streaming = handler.unary_stream is not None or handler.stream_stream is not None
    kind = ("stream" if client_streaming else "unary") + "_" + ("stream" if server_streaming else "unary")
    multicallable = getattr(channel, kind)(method)
    request: Any = iter([payload]) if client_streaming else payload
    responses: list[bytes] = []
    try:
        if server_streaming:
            for response in multicallable(request, timeout=CALL_TIMEOUT, metadata=metadata):
                responses.append(response)
                break
            return grpc.StatusCode.OK, "", responses
        responses.append(multicallable(request, timeout=CALL_TIMEOUT, metadata=metadata))
        return grpc.StatusCode.OK, "", responses
    except grpc.RpcError as err:
        return err.code(), err.details() or "", responses


# ---------------------------------------------------------------------------- state


def state_of(m: MemberThread, certs: Path | None) -> tuple[int, list[int], list[int], bytes]:
    """(revision, member ids, lease ids, the probe key's value) as the admin reads them."""
    metadata = (("authorization", f"Bearer {TOKENS['root']}"),)
    with channel_to(m, "client", certs) as channel:
        kv = kv_pb2_grpc.KVStub(channel)
        got = kv.Range(kv_pb2.RangeRequest(key=b"enum-probe", range_end=b"enum-probf"), timeout=10, metadata=metadata)
        members = cluster_pb2_grpc.ClusterStub(channel).MemberList(cluster_pb2.ClusterMemberListRequest(), timeout=10, metadata=metadata)
        leases = lease_pb2_grpc.LeaseStub(channel).List(lease_pb2.LeaseListRequest(), timeout=10, metadata=metadata)
    return (got.header.revision, sorted(x.id for x in members.members), sorted(x.id for x in leases.leases),
            b"".join(kv.value for kv in got.kvs))


def leaks(details: str, m: MemberThread) -> list[str]:
    node = m.server.node
    assert node is not None
    ids = [node.config.cluster_id, node.id]
    return [f"{i:#x}" for i in ids if f"{i:x}" in details.lower() or str(i) in details]


# ---------------------------------------------------------------------------- the test


def probe_member(layout: str, m: MemberThread, certs: Path | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Call every method every port of ``m`` registered, as strangers; (the table of
    answers, the problems found)."""
    node = m.server.node
    assert node is not None
    cluster_id = node.config.cluster_id
    table: list[dict[str, Any]] = []
    problems: list[str] = []
    for port, registry in sorted(m.server.registries.items()):
        if OPAQUE in registry.methods:
            problems.append(f"{port} port: a generic handler whose methods cannot be listed")
        if not registry.methods:
            problems.append(f"{port} port registered nothing")
        for method, handler in sorted(registry.methods.items()):
            if method == OPAQUE:
                continue
            access = access_of(method)
            if access is None:
                problems.append(f"{port} {method}: no access rule in coord_server/auth/rules.py")
            elif access is Access.PUBLIC and not has_rule(method):
                problems.append(f"{port} {method}: no rule in coord_server/auth/requirements.py")
            payload = request_bytes(method, cluster_id)
            row: dict[str, Any] = {"layout": layout, "port": port, "method": method, "rule": access.value if access else "none"}
            for who, metadata in (("no credentials", ()), ("role granting nothing", (("authorization", f"Bearer {NOBODY_TOKEN}"),))):
                with channel_to(m, port, certs) as channel:
                    code, details, responses = call(channel, method, handler, payload, metadata)
                answer = code.name
                if method == "/coord.v1.KV/Pipeline" and responses:
                    results = kv_pb2.PipelineResponse.FromString(responses[0]).results
                    answer = "OK, ops: " + ",".join("OK" if r.code == 0 else _code(r.code) for r in results)
                row[who] = answer
                for leaked in leaks(details, m):
                    problems.append(f"{port} {method} ({who}): the error names {leaked}: {details!r}")
                if access is Access.OPEN or code in REFUSED:
                    continue
                # An etcd call (TRANSLATED) is admitted as the coord.v1 call it becomes.
                equivalent = COORD_EQUIVALENTS.get(method, "") if access is Access.TRANSLATED else method
                if who == "role granting nothing" and access in (Access.PUBLIC, Access.TRANSLATED) and equivalent and (
                    any_authenticated_user(equivalent) or equivalent in ("/coord.v1.Lease/Revoke",)
                ):
                    if method == "/coord.v1.KV/Pipeline" and "PERMISSION_DENIED" not in answer:
                        problems.append(f"{port} {method} ({who}): its ops were not refused: {answer}")
                    continue
                problems.append(f"{port} {method} ({who}): answered {code.name} {details!r}")
            table.append(row)
    return table, problems


def test_every_method_on_every_port_refuses_strangers(member: tuple[str, MemberThread, Any]) -> None:
    layout, m, certs = member
    before = state_of(m, certs)
    table, problems = probe_member(layout, m, certs)
    after = state_of(m, certs)
    # A role granting nothing may grant itself a lease (any authenticated user may);
    # nothing else may change.
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3], (before, after)
    _report(table)
    assert not problems, "\n".join(problems)
    ports = {row["port"] for row in table}
    assert ports == ({"client"} if layout == "single-port" else {"client", "peer"})
    raft_on = {row["port"] for row in table if service_of(row["method"]) == "coord.raft.v1.Raft"}
    assert raft_on == ({"client"} if layout == "single-port" else {"peer"})


def test_a_new_service_without_a_rule_is_found_and_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What this test does the day someone adds a service and forgets its rule: the
    service is refused to everyone (auth on), and the enumeration reports it."""
    import coord_server.services as services

    ran: list[bytes] = []

    async def do(request: bytes, context: Any) -> bytes:
        ran.append(request)
        return b""

    original = services.add_services

    def add_services_and_more(server: Any, member: Any) -> Any:
        forward = original(server, member)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "future.v1.Thing", {"Do": grpc.unary_unary_rpc_method_handler(do)},
        ),))
        return forward

    monkeypatch.setattr(services, "add_services", add_services_and_more)
    (port,) = free_ports(1)
    m = MemberThread([
        "--name", "n1", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}",
        "--auth-file", str(write_auth(tmp_path)), "--peer-secret-file", str(write_peer_secret(tmp_path)),
    ]).start()
    try:
        table, problems = probe_member("single-port", m, None)
        admin = (("authorization", f"Bearer {TOKENS['root']}"),)
        with channel_to(m, "client", None) as channel:
            as_admin = call(channel, "/future.v1.Thing/Do", m.server.registries["client"].methods["/future.v1.Thing/Do"], b"x", admin)
    finally:
        m.stop()
    assert problems == ["client /future.v1.Thing/Do: no access rule in coord_server/auth/rules.py"]
    row = next(r for r in table if r["method"] == "/future.v1.Thing/Do")
    assert row["no credentials"] == row["role granting nothing"] == "PERMISSION_DENIED"
    assert as_admin[0] == grpc.StatusCode.PERMISSION_DENIED and "no access rule" in as_admin[1]
    assert ran == []


def _code(number: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == number:
            return status.name
    return str(number)


def _report(table: list[dict[str, Any]]) -> None:
    if not REPORT:
        return
    with open(REPORT, "a") as f:
        for row in table:
            f.write(json.dumps(row) + "\n")

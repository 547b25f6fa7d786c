"""Auth applies to the etcd API as to coord.v1: the same tokens and permissions. etcd's
Authenticate takes the user's coord token as its password."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import pytest

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from tests.integration.harness import Cluster

AUTH_FILE = """
[roles.app]
keys = [{prefix = "app/", access = "readwrite"}]

[users.billing]
token = "billing-token"
roles = ["app"]

[users.other]
token = "other-token"
roles = ["app"]
"""


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("auth")
    (base / "auth.toml").write_text(AUTH_FILE)
    secret = base / "peer-secret"  # auth on needs peer authentication too
    secret.write_text("peer-secret-of-the-etcd-api-tests-0123456789\n")
    secret.chmod(0o600)
    cluster = Cluster(base / "c", 1, options=("--auth-file", str(base / "auth.toml"), "--peer-secret-file", str(secret)))
    cluster.start()
    try:
        node = next(iter(cluster.nodes.values()))
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(node.address) as ch:
            while time.monotonic() < deadline:  # AuthStatus needs no token: wait until it answers
                try:
                    etcd_grpc.AuthStub(ch).AuthStatus(etcd.AuthStatusRequest(), timeout=2)
                    break
                except grpc.RpcError:
                    time.sleep(0.2)
        yield node.address
    finally:
        cluster.stop_all()


def test_authenticate_then_use_the_token(address: str) -> None:
    with grpc.insecure_channel(address) as ch:
        auth, kv = etcd_grpc.AuthStub(ch), etcd_grpc.KVStub(ch)
        assert auth.AuthStatus(etcd.AuthStatusRequest(), timeout=10).enabled
        with pytest.raises(grpc.RpcError) as bad:
            auth.Authenticate(etcd.AuthenticateRequest(name="billing", password="wrong"), timeout=10)
        assert (bad.value.code(), bad.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
        token = auth.Authenticate(etcd.AuthenticateRequest(name="billing", password="billing-token"), timeout=10).token
        md = (("token", token),)
        kv.Put(etcd.PutRequest(key=b"app/x", value=b"1"), metadata=md, timeout=10)
        assert kv.Range(etcd.RangeRequest(key=b"app/x"), metadata=md, timeout=10).kvs[0].value == b"1"
        with pytest.raises(grpc.RpcError) as denied:
            kv.Put(etcd.PutRequest(key=b"other", value=b"1"), metadata=md, timeout=10)
        assert (denied.value.code(), denied.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        with pytest.raises(grpc.RpcError) as no_admin:
            etcd_grpc.MaintenanceStub(ch).HashKV(etcd.HashKVRequest(), metadata=md, timeout=10)
        assert no_admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as anonymous:
            kv.Range(etcd.RangeRequest(key=b"app/x"), timeout=10)
        assert (anonymous.value.code(), anonymous.value.details()) == (
            grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


def test_a_forbidden_watch_ends_with_permission_denied(address: str) -> None:
    with grpc.insecure_channel(address) as ch:
        requests: queue.Queue[etcd.WatchRequest | None] = queue.Queue()
        requests.put(etcd.WatchRequest(create_request=etcd.WatchCreateRequest(key=b"other")))

        def feed():  # type: ignore[no-untyped-def]
            while (item := requests.get()) is not None:
                yield item

        stream = etcd_grpc.WatchStub(ch).Watch(feed(), metadata=(("token", "billing-token"),), timeout=10)
        with pytest.raises(grpc.RpcError) as denied:
            for _ in stream:
                pass
        requests.put(None)
        assert (denied.value.code(), denied.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")


def test_keepalive_of_another_users_lease_is_refused(address: str) -> None:
    """Leases belong to their granter through the etcd API too (docs/security.md)."""
    with grpc.insecure_channel(address) as ch:
        lease = etcd_grpc.LeaseStub(ch)
        billing = (("authorization", "Bearer billing-token"),)
        other = (("authorization", "Bearer other-token"),)
        theirs = lease.LeaseGrant(etcd.LeaseGrantRequest(TTL=60), timeout=10, metadata=other).ID
        own = lease.LeaseGrant(etcd.LeaseGrantRequest(TTL=60), timeout=10, metadata=billing).ID
        answers = list(lease.LeaseKeepAlive(iter([etcd.LeaseKeepAliveRequest(ID=own)]), timeout=10, metadata=billing))
        assert [a.ID for a in answers] == [own] and answers[0].TTL > 0
        with pytest.raises(grpc.RpcError) as refused:
            list(lease.LeaseKeepAlive(iter([etcd.LeaseKeepAliveRequest(ID=theirs)]), timeout=10, metadata=billing))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

"""etcd's user and role management through etcdctl 3.4, unmodified, over coord's runtime
users and roles (coord.v1.Auth): etcd's error wording, prefix permissions enforced, and a
clear refusal of what coord's permissions cannot express."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coord.etcd.authpb import auth_pb2 as authpb
from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc
from tests.etcd.servers import client_env, require_etcdctl
from tests.integration.harness import Cluster


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("auth-mgmt")
    secret = base / "peer-secret"  # auth on needs peer authentication too
    secret.write_text("peer-secret-of-the-etcd-auth-management-tests-0123456789\n")
    secret.chmod(0o600)
    cluster = Cluster(base / "c", 1, options=("--peer-secret-file", str(secret)))
    cluster.start()
    try:
        cluster.wait_for_leader()
        yield next(iter(cluster.nodes.values())).address
    finally:
        cluster.stop_all()


def ctl(address: str, *args: str, user: str | None = None, ok: bool = True) -> str:
    argv = [require_etcdctl(), "--endpoints", address, "--command-timeout", "20s"]
    if user:
        argv += ["--user", user]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, env=client_env())
    if ok:
        assert done.returncode == 0, f"etcdctl {' '.join(args)} failed: {done.stderr}"
        return done.stdout
    assert done.returncode != 0, f"etcdctl {' '.join(args)} should have failed: {done.stdout}"
    return done.stderr


def test_etcdctl_manages_users_and_roles_and_auth_applies(address: str) -> None:
    assert ctl(address, "user", "add", "root:rootpw") == "User root created\n"
    assert ctl(address, "user", "add", "alice:alicepw") == "User alice created\n"
    assert "etcdserver: user name already exists" in ctl(address, "user", "add", "alice:x", ok=False)
    assert ctl(address, "role", "add", "app") == "Role app created\n"
    assert "etcdserver: role name already exists" in ctl(address, "role", "add", "app", ok=False)
    assert "Role app updated" in ctl(address, "role", "grant-permission", "--prefix=true", "app", "readwrite", "app/")
    assert "Role app is granted to user alice" in ctl(address, "user", "grant-role", "alice", "app")
    assert "app" in ctl(address, "user", "get", "alice")
    role = ctl(address, "role", "get", "app")
    assert "[app/, app0)" in role, role
    assert ctl(address, "user", "list").split() == ["alice", "root"]
    assert "etcdserver: user name not found" in ctl(address, "user", "get", "nobody", ok=False)
    assert "etcdserver: role name not found" in ctl(address, "role", "get", "nobody", ok=False)
    assert "etcdserver: role is not granted to the user" in ctl(address, "user", "revoke-role", "root", "app", ok=False)
    assert "etcdserver: permission is not granted to the role" in ctl(
        address, "role", "revoke-permission", "app", "nothing", ok=False)
    # etcdctl's auth enable creates the root role (coord: an admin role) and grants it to root.
    assert "Authentication Enabled" in ctl(address, "auth", "enable")
    assert "etcdserver: invalid auth management" in ctl(  # the last admin: coord's NoAdmin, by class
        address, "user", "revoke-role", "root", "root", user="root:rootpw", ok=False)

    assert ctl(address, "put", "app/x", "1", user="alice:alicepw") == "OK\n"
    assert ctl(address, "get", "app/x", "--print-value-only", user="alice:alicepw") == "1\n"
    assert "etcdserver: permission denied" in ctl(address, "put", "other", "1", user="alice:alicepw", ok=False)
    assert ctl(address, "user", "list", user="root:rootpw").split() == ["alice", "root"]
    assert "etcdserver: permission denied" in ctl(address, "user", "list", user="alice:alicepw", ok=False)
    assert "etcdserver: authentication failed" in ctl(address, "get", "app/x", user="alice:wrong", ok=False)

    assert "Role app is revoked from user alice" in ctl(address, "user", "revoke-role", "alice", "app", user="root:rootpw")
    assert "etcdserver: permission denied" in ctl(address, "get", "app/x", user="alice:alicepw", ok=False)
    assert "Authentication Disabled" in ctl(address, "auth", "disable", user="root:rootpw")
    assert "User alice deleted" in ctl(address, "user", "delete", "alice")
    assert "Role app deleted" in ctl(address, "role", "delete", "app")


def test_permissions_coord_cannot_express_are_refused(address: str) -> None:
    with grpc.insecure_channel(address) as ch:
        auth = etcd_grpc.AuthStub(ch)
        auth.RoleAdd(etcd.AuthRoleAddRequest(name="narrow"), timeout=20)
        for perm in (
            authpb.Permission(permType=authpb.Permission.READ, key=b"one-key"),  # a single key
            authpb.Permission(permType=authpb.Permission.READ, key=b"a", range_end=b"m"),  # not a prefix
            authpb.Permission(permType=authpb.Permission.WRITE, key=b"p/", range_end=b"p0"),  # write-only
        ):
            with pytest.raises(grpc.RpcError) as refused:
                auth.RoleGrantPermission(etcd.AuthRoleGrantPermissionRequest(name="narrow", perm=perm), timeout=20)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
            assert "coord" in refused.value.details()
        auth.RoleGrantPermission(etcd.AuthRoleGrantPermissionRequest(
            name="narrow", perm=authpb.Permission(permType=authpb.Permission.READ, key=b"\x00", range_end=b"\x00")), timeout=20)
        perms = auth.RoleGet(etcd.AuthRoleGetRequest(role="narrow"), timeout=20).perm
        assert [(p.permType, p.key, p.range_end) for p in perms] == [(authpb.Permission.READ, b"\x00", b"\x00")]
        with pytest.raises(grpc.RpcError) as missing:
            auth.UserGrantRole(etcd.AuthUserGrantRoleRequest(user="nobody", role="narrow"), timeout=20)
        assert (missing.value.code(), missing.value.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found")
        auth.RoleDelete(etcd.AuthRoleDeleteRequest(role="narrow"), timeout=20)

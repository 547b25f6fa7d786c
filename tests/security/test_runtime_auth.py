"""Users, roles and grants at run time, through real coord-server processes (3 members
started without an auth file), the real client and coordctl: changes go through the log
and hold on every member at once, without a restart; a permission revoked while a write
is in flight makes that write fail when applied; leases belong to their granter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from coord.v1 import lock_pb2, lock_pb2_grpc
from coord_client import Client, errors
from coord_client.aio import AsyncClient
from tests.integration.harness import wait_until

from .conftest import ROOT, AuthCluster, channel_as, write_peer_secret

pytestmark = pytest.mark.slow

ROOT_PASSWORD = "root-password-1"
ALICE_PASSWORD = "alice-password-1"


def endpoints(cluster: AuthCluster, names: list[str] | None = None) -> str:
    return ",".join(n.address for name, n in cluster.nodes.items() if names is None or name in names)


def coordctl(cluster: AuthCluster, *args: str, token: str = "", stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COORD_ENDPOINTS": endpoints(cluster), "COORD_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "coord_client.cli", "--command-timeout", "20", *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=90,
    )


@pytest.fixture(scope="module")
def cluster(module_cluster: Callable[..., AuthCluster], tmp_path_factory: pytest.TempPathFactory) -> AuthCluster:
    """3 members, auth off at start; the harness's channels get root's token once it exists."""
    # Small snapshots: the auth state must come back from a snapshot after a restart. The
    # peer secret: auth on needs authenticated peer RPCs (Auth.Enable refuses otherwise).
    secret = write_peer_secret(tmp_path_factory.mktemp("runtime-auth"))
    options = ("--snapshot-entries", "100", "--peer-secret-file", str(secret))
    return module_cluster(3, options=options, cluster_class=AuthCluster, admin_token="")


@pytest.fixture(scope="module")
def root_token(cluster: AuthCluster) -> str:
    """Set up with coordctl as an operator would: roles, users, then auth enable."""
    def ok(*args: str, stdin: str = "") -> str:
        done = coordctl(cluster, *args, stdin=stdin)
        assert done.returncode == 0, done
        return done.stdout

    ok("role", "add", "root", "--admin")
    with Client(endpoints(cluster), token="", timeout=20) as client:  # auth is off: anyone may
        client.auth.role_add("app")
        client.auth.role_grant_permission("app", "locks", "app/", "readwrite")
        client.auth.user_add("root", ROOT_PASSWORD)
        client.auth.user_add("bob", "bob-password-1")
    ok("role", "grant", "app", "readwrite", "app/")
    ok("user", "add", "alice", stdin=ALICE_PASSWORD + "\n")  # the password from stdin
    ok("user", "grant-role", "alice", "app")
    with Client(endpoints(cluster), token="", timeout=20) as client:
        client.auth.user_grant_role("bob", "app")
        # The guard: nobody holds an admin role yet, so enabling would lock everyone out.
        with pytest.raises(errors.FailedPrecondition, match="lock everyone out"):
            client.auth.enable()
        client.auth.user_grant_role("root", "root")
    ok("auth", "enable")
    token = ok("auth", "login", "root", "--password", ROOT_PASSWORD).strip()
    cluster.admin_token = token
    cluster._channels.clear()
    return token


def login(cluster: AuthCluster, name: str, password: str) -> str:
    with Client(endpoints(cluster), token="", timeout=20) as anonymous:
        return anonymous.auth.authenticate(name, password)


def test_changes_apply_on_every_member_without_a_restart(cluster: AuthCluster, root_token: str) -> None:
    with Client(endpoints(cluster), token="", timeout=20) as anonymous:
        with pytest.raises(errors.Unauthenticated):
            anonymous.put("app/x", "no token")
        with pytest.raises(errors.Unauthenticated):
            anonymous.auth.authenticate("alice", "wrong password")
    alice_token = login(cluster, "alice", ALICE_PASSWORD)
    # The token is replicated state: every member knows it.
    for name in cluster.nodes:
        with Client(endpoints(cluster, [name]), token=alice_token, timeout=20) as alice:
            alice.put(f"app/{name}", "v")
            with pytest.raises(errors.PermissionDenied):
                alice.put("other/x", "v")
    with Client(endpoints(cluster), token=root_token, timeout=20) as root:
        assert root.auth.status().enabled
        assert root.auth.user_list() == ["alice", "bob", "root"]
        assert root.auth.user_get("alice").roles == ("app",)
        root.auth.role_grant_permission("app", "keys", "shared/", "read")
        assert [(p.kind, p.prefix, p.access) for p in root.auth.role_get("app").permissions] == [
            ("keys", b"app/", "readwrite"), ("keys", b"shared/", "read"), ("locks", b"app/", "readwrite"),
        ]
        root.put("shared/config", "c")
        with Client(endpoints(cluster), token=alice_token, timeout=20) as alice:
            assert alice.get("shared/config").value == b"c"  # type: ignore[union-attr]
            # A revoke holds at once on every member (each serves reads from its own state
            # after a ReadIndex round, so it has applied the revoke).
            root.auth.role_revoke_permission("app", "keys", "shared/")
            with pytest.raises(errors.PermissionDenied):
                alice.get("shared/config")  # its Pipeline stream was opened before the revoke
            for name in cluster.nodes:
                with Client(endpoints(cluster, [name]), token=alice_token, timeout=20) as one:
                    with pytest.raises(errors.PermissionDenied):
                        one.get("shared/config")
        # A new password ends every token of the user.
        root.auth.user_change_password("alice", "alice-password-2")
        # (Through the leader, which has applied the change when it answers; a lagging
        # follower refuses the old token once it has applied it too.)
        with Client(endpoints(cluster, [cluster.wait_for_leader()]), token=alice_token, timeout=20) as alice:
            with pytest.raises(errors.Unauthenticated):
                alice.put("app/x", "old token")
        # Nobody is locked out: the last admin cannot lose its role while auth is on.
        with pytest.raises(errors.FailedPrecondition):
            root.auth.user_revoke_role("root", "root")
    shown = coordctl(cluster, "role", "get", "app", "--json", token=root_token)
    assert shown.returncode == 0 and '"prefix": "app/"' in shown.stdout, shown
    status = coordctl(cluster, "auth", "status", token=root_token)
    assert status.returncode == 0 and "Authentication Status: true" in status.stdout, status
    denied = coordctl(cluster, "user", "list", token=login(cluster, "bob", "bob-password-1"))
    assert denied.returncode == 1 and "PermissionDenied" in denied.stderr, denied


def test_a_revoke_committed_before_an_in_flight_write_fails_that_write(cluster: AuthCluster, root_token: str) -> None:
    """The user's role is revoked and, at once, the user writes: the write passes the
    check of the member that accepts it (the revoke is not applied there yet) but lands
    in the log after the revoke, so applying it refuses it. No write may succeed after
    the revoke: its revision would be above the revoke's."""
    bob_token = login(cluster, "bob", "bob-password-1")
    # Both talk to the leader: it has applied each change it answers, and it checks bob's
    # write against its own state while the revoke waits in its proposal queue.
    leader = endpoints(cluster, [cluster.wait_for_leader()])

    async def trial(root: AsyncClient, bob: AsyncClient, i: int) -> str:
        await root.auth.user_grant_role("bob", "app")
        await bob.put("app/warm", str(i))  # the pipeline stream is open
        revoke = asyncio.ensure_future(root.auth.user_revoke_role("bob", "app"))
        # Somewhere in the revoke's time between arriving and being applied (a few ms:
        # the log's fsync), bob's write arrives; spread the trials over that window.
        await asyncio.sleep((i % 8) / 1000)
        try:
            written = await bob.put(f"app/race-{i}", "x")
        except errors.PermissionDenied as err:
            await revoke
            return "applied" if "checked when applied" in str(err) else "edge"
        revoked_at = await revoke
        assert written.revision <= revoked_at, "a write applied after the revoke succeeded"
        return "before"

    async def run() -> list[str]:
        async with AsyncClient(leader, token=root_token, timeout=20) as root, \
                AsyncClient(leader, token=bob_token, timeout=20) as bob:
            outcomes = []
            for i in range(40):
                outcomes.append(await trial(root, bob, i))
                if outcomes.count("applied") >= 3:
                    break
            return outcomes

    outcomes = asyncio.run(run())
    print(f"race outcomes (refused when applied / at the edge / applied before the revoke): {outcomes}")
    assert "applied" in outcomes, f"the race never reached the apply-time check: {outcomes}"
    with Client(endpoints(cluster), token=root_token, timeout=20) as root:
        refused = [i for i, o in enumerate(outcomes) if o != "before"]
        assert all(root.get(f"app/race-{i}") is None for i in refused), "a refused write changed something"


def test_leases_belong_to_their_granter(cluster: AuthCluster, root_token: str) -> None:
    alice_token = login(cluster, "alice", "alice-password-2")
    bob_token = login(cluster, "bob", "bob-password-1")
    with Client(endpoints(cluster), token=alice_token, timeout=20) as alice, \
            Client(endpoints(cluster), token=bob_token, timeout=20) as bob, \
            Client(endpoints(cluster), token=root_token, timeout=20) as root:
        root.auth.user_grant_role("bob", "app")
        lease = alice.grant_lease(60)
        alice.put("app/owned", "v", lease=lease)
        for name in cluster.nodes:  # on the leader and on followers alike
            with Client(endpoints(cluster, [name]), token=bob_token, timeout=20) as one:
                with pytest.raises(errors.PermissionDenied, match="belongs to user 'alice'"):
                    one.keepalive_once(lease.id)
                with pytest.raises(errors.PermissionDenied, match="belongs to user 'alice'"):
                    one.lease_info(lease.id)
        with pytest.raises(errors.PermissionDenied, match="belongs to user 'alice'"):
            bob.revoke_lease(lease.id)
        with pytest.raises(errors.PermissionDenied, match="belongs to user 'alice'"):
            bob.put("app/bound", "v", lease=lease.id)
        as_bob = lock_pb2_grpc.LockStub(channel_as(cluster.nodes[cluster.wait_for_leader()].address, bob_token))
        with pytest.raises(grpc.RpcError) as refused:
            as_bob.Acquire(lock_pb2.LockAcquireRequest(name="app/job", lease=lease.id, no_wait=True), timeout=20)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
        assert alice.keepalive_once(lease) > 0 and root.lease_info(lease.id).granted_ttl >= 60
        assert root.get("app/owned").value == b"v"  # type: ignore[union-attr]
        with alice.lock("app/job", lease=lease):
            pass
        root.revoke_lease(lease.id)  # an admin may
        assert root.get("app/owned") is None


def test_auth_state_survives_a_restart_from_a_snapshot(cluster: AuthCluster, root_token: str) -> None:
    name = next(n for n in cluster.nodes if n != cluster.wait_for_leader())
    alice_token = login(cluster, "alice", "alice-password-2")  # before the snapshot: restored from it
    with Client(endpoints(cluster), token=root_token, timeout=20) as root:
        for i in range(120):  # past --snapshot-entries, after every auth change so far
            root.put("app/fill", str(i))
    wait_until(lambda: cluster.status(name).snapshot_index > 0, timeout=60, what=f"a snapshot on {name}")
    cluster.restart(name)
    with Client(endpoints(cluster, [name]), token=alice_token, timeout=30) as alice:
        wait_until(lambda: _puts(alice), timeout=60, what=f"{name} serves alice after its restart")
        with pytest.raises(errors.PermissionDenied):
            alice.put("other/x", "v")


def _puts(client: Client) -> bool:
    try:
        client.put("app/after-restart", "v")
        return True
    except (errors.Unavailable, errors.DeadlineExceeded):
        return False

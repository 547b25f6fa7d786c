"""Authentication and RBAC through real coord-server processes (3 members, auth on), the
real client and coordctl.

Roles (tests/security/conftest.py): admin; reader (read everything); writer_a
(read-write on keys a/ only); lockers (locks, elections and rings named jobs/...).
Every denied request is checked to have changed nothing, by reading as the admin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coord.v1 import cluster_pb2, cluster_pb2_grpc, election_pb2, election_pb2_grpc, kv_pb2, kv_pb2_grpc
from coord.v1 import lock_pb2, lock_pb2_grpc, ring_pb2, ring_pb2_grpc
from coord_client import Client, Compare, Op, errors
from coord_server.auth.requirements import AUTHENTICATED_ONLY, _BY_METHOD
from tests.integration.harness import Cluster

from .conftest import ROOT, TOKENS, channel_as

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(module_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    c: Cluster = module_cluster(3, auth=True)
    c.call("Put", kv_pb2.PutRequest(key=b"b/seed", value=b"seed"))
    return c


def endpoints(cluster: Cluster) -> str:
    return ",".join(n.address for n in cluster.nodes.values())


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[dict[str, Client]]:
    made = {name: Client(endpoints(cluster), token=token, timeout=20) for name, token in TOKENS.items()}
    made["none"] = Client(endpoints(cluster), token="", timeout=20)
    made["wrong"] = Client(endpoints(cluster), token="not-a-token-of-this-cluster", timeout=20)
    try:
        yield made
    finally:
        for c in made.values():
            c.close()


def value_of(clients: dict[str, Client], key: str) -> bytes | None:
    kv = clients["root"].get(key)
    return None if kv is None else kv.value


def test_missing_or_wrong_token_is_unauthenticated_and_changes_nothing(clients: dict[str, Client]) -> None:
    for who in ("none", "wrong"):
        with pytest.raises(errors.Unauthenticated):
            clients[who].put("a/unauth", "x")
        with pytest.raises(errors.Unauthenticated):
            clients[who].get("b/seed")
        with pytest.raises(errors.Unauthenticated):
            clients[who].status()
        with pytest.raises(errors.Unauthenticated):
            clients[who].grant_lease(10)
    assert value_of(clients, "a/unauth") is None


def test_reader_can_range_but_not_write(clients: dict[str, Client]) -> None:
    reader = clients["reader"]
    assert reader.get("b/seed").value == b"seed"  # type: ignore[union-attr]
    assert [kv.key for kv in reader.get_prefix("b/")] == [b"b/seed"]
    with pytest.raises(errors.PermissionDenied, match="reader"):
        reader.put("b/seed", "changed")
    with pytest.raises(errors.PermissionDenied):
        reader.delete("b/seed")
    with pytest.raises(errors.PermissionDenied):
        reader.compact(1)
    assert value_of(clients, "b/seed") == b"seed"
    # Any authenticated user may see the cluster's status.
    assert reader.status().leader


def test_writer_on_prefix_a_cannot_touch_b(clients: dict[str, Client]) -> None:
    writer = clients["writer_a"]
    writer.put("a/1", "one")
    assert writer.get("a/1").value == b"one"  # type: ignore[union-attr]
    assert len(writer.get_prefix("a/")) >= 1
    with pytest.raises(errors.PermissionDenied):
        writer.put("b/1", "one")
    with pytest.raises(errors.PermissionDenied):
        writer.get("b/seed")
    with pytest.raises(errors.PermissionDenied):
        writer.delete_prefix("b/")
    with pytest.raises(errors.PermissionDenied):
        writer.get_prefix("a")  # [a, b) is wider than a/
    assert value_of(clients, "b/1") is None
    assert value_of(clients, "b/seed") == b"seed"


def test_txn_touching_a_forbidden_key_is_denied_entirely(clients: dict[str, Client]) -> None:
    writer = clients["writer_a"]
    before = clients["root"].range("a/", "a0").revision
    # The forbidden key is only in the branch that would not run: still denied.
    for txn in (
        writer.txn().when(Compare.missing("a/t")).then(Op.put("a/t", "1"), Op.put("b/t", "1")),
        writer.txn().when(Compare.missing("a/t")).then(Op.put("a/t", "1")).otherwise(Op.delete("b/seed")),
        writer.txn().when(Compare.missing("b/seed")).then(Op.put("a/t", "1")),
        writer.txn().when(Compare.lock_token("jobs/x") == 0).then(Op.put("a/t", "1")),
    ):
        with pytest.raises(errors.PermissionDenied):
            txn.commit()
    assert value_of(clients, "a/t") is None and value_of(clients, "b/t") is None
    assert value_of(clients, "b/seed") == b"seed"
    assert clients["root"].range("a/", "a0").revision == before
    result = writer.txn().when(Compare.missing("a/t")).then(Op.put("a/t", "1")).commit()
    assert result.succeeded and value_of(clients, "a/t") == b"1"


def test_lock_election_and_ring_names(clients: dict[str, Client], cluster: Cluster) -> None:
    locker, reader = clients["lockers"], clients["reader"]
    held = locker.lock("jobs/build", ttl=5)
    assert held.acquire(timeout=15)
    held.release()
    with pytest.raises(errors.PermissionDenied):
        locker.lock("other/build", ttl=5).acquire(timeout=15)
    with pytest.raises(errors.PermissionDenied):
        reader.lock("jobs/build", ttl=5).acquire(timeout=15)
    assert reader.lock_info("jobs/build").holders == ()  # inspecting reads
    # Election and Ring by raw stubs on one member, each answer checked.
    address = next(iter(cluster.nodes.values())).address
    for token, name, allowed in ((TOKENS["lockers"], "jobs/e", True), (TOKENS["lockers"], "other/e", False),
                                 (TOKENS["reader"], "jobs/e", False)):
        channel = channel_as(address, token)
        election = election_pb2_grpc.ElectionStub(channel)
        ring = ring_pb2_grpc.RingStub(channel)
        calls = [
            lambda: election.Campaign(election_pb2.ElectionCampaignRequest(name=name, lease=1, value=b"v"), timeout=10),
            lambda: ring.Join(ring_pb2.RingJoinRequest(ring=name, member_id="m1", address="h:1"), timeout=10),
        ]
        for call in calls:
            code = _outcome(call)  # Campaign on a lease that does not exist: NOT_FOUND once admitted
            assert (code != grpc.StatusCode.PERMISSION_DENIED) if allowed else (code == grpc.StatusCode.PERMISSION_DENIED)
        channel.close()
    reader_channel = channel_as(address, TOKENS["reader"])
    election_pb2_grpc.ElectionStub(reader_channel).Leader(election_pb2.ElectionLeaderRequest(name="jobs/e"), timeout=10)
    ring_pb2_grpc.RingStub(reader_channel).Get(ring_pb2.RingGetRequest(ring="jobs/e"), timeout=10)
    reader_channel.close()


def _outcome(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_watch_needs_read_on_its_range(clients: dict[str, Client]) -> None:
    writer = clients["writer_a"]
    with pytest.raises(errors.PermissionDenied):
        writer.watch("b/seed").start()
    watch = writer.watch_prefix("a/w/").start()
    try:
        clients["root"].put("a/w/1", "x")
        event = next(iter(watch))
        assert event.kv.key == b"a/w/1"
    finally:
        watch.cancel()


def test_auth_through_a_follower(cluster: Cluster, clients: dict[str, Client]) -> None:
    leader = cluster.wait_for_leader()
    follower = next(name for name in cluster.nodes if name != leader)
    address = cluster.nodes[follower].address

    def kv(token: str | None) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(channel_as(address, token))

    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), ("wrong-token-000", grpc.StatusCode.UNAUTHENTICATED),
                        (TOKENS["reader"], grpc.StatusCode.PERMISSION_DENIED),
                        (TOKENS["writer_a"], grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.RpcError) as err:
            kv(token).Put(kv_pb2.PutRequest(key=b"b/f", value=b"x"), timeout=10)
        assert err.value.code() == code, err.value.details()
    response = kv(TOKENS["writer_a"]).Put(kv_pb2.PutRequest(key=b"a/f", value=b"x"), timeout=10)
    assert response.header.member_id != 0
    assert value_of(clients, "b/f") is None and value_of(clients, "a/f") == b"x"
    # The follower's Pipeline checks each op; a denied op is that op's result only.
    stream = kv(TOKENS["writer_a"]).Pipeline(iter([kv_pb2.PipelineRequest(ops=[
        kv_pb2.PipelineOp(id=1, put=kv_pb2.PutRequest(key=b"a/p", value=b"1")),
        kv_pb2.PipelineOp(id=2, put=kv_pb2.PutRequest(key=b"b/p", value=b"1")),
    ])]), timeout=10)
    results = {r.id: r for message in stream for r in message.results}
    assert results[1].code == 0 and results[2].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert value_of(clients, "b/p") is None and value_of(clients, "a/p") == b"1"


def test_cluster_changes_need_admin_and_health_stays_open(cluster: Cluster) -> None:
    address = next(iter(cluster.nodes.values())).address
    reader = cluster_pb2_grpc.ClusterStub(channel_as(address, TOKENS["reader"]))
    assert len(reader.MemberList(cluster_pb2.ClusterMemberListRequest(), timeout=10).members) == 3
    for call in (
        lambda: reader.MemberRemove(cluster_pb2.ClusterMemberRemoveRequest(id=12345), timeout=10),
        lambda: reader.TransferLeadership(cluster_pb2.ClusterTransferLeadershipRequest(), timeout=10),
        lambda: reader.MemberAdd(cluster_pb2.ClusterMemberAddRequest(name="x", peer_address="127.0.0.1:1"), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(cluster.stub("n1", cluster_pb2_grpc.ClusterStub).MemberList(
        cluster_pb2.ClusterMemberListRequest(), timeout=10).members) == 3
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_coordctl_token_flag_and_environment(cluster: Cluster) -> None:
    def coordctl(*args: str, token_env: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "COORD_TOKEN"}
        if token_env is not None:
            env["COORD_TOKEN"] = token_env
        return subprocess.run(
            [sys.executable, "-m", "coord_client.cli", "--endpoints", endpoints(cluster), *args],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
        )

    no_token = coordctl("get", "b/seed")
    assert no_token.returncode == 1 and "Unauthenticated" in no_token.stderr, no_token
    wrong = coordctl("--token", "wrong-token-000", "get", "b/seed")
    assert wrong.returncode == 1 and "Unauthenticated" in wrong.stderr, wrong
    via_env = coordctl("get", "b/seed", token_env=TOKENS["reader"])
    assert via_env.returncode == 0 and "seed" in via_env.stdout, via_env
    denied = coordctl("put", "b/seed", "nope", "--token", TOKENS["reader"])
    assert denied.returncode == 1 and "PermissionDenied" in denied.stderr, denied
    allowed = coordctl("--token", TOKENS["writer_a"], "put", "a/ctl", "yes")
    assert allowed.returncode == 0, allowed
    assert coordctl("get", "a/ctl", token_env=TOKENS["root"]).stdout.strip().endswith("yes")


def test_every_public_rpc_has_a_rule() -> None:
    """A coord.v1 RPC added later is denied to non-admins until it gets a rule here (what
    a running member really serves: tests/security/test_enumeration.py)."""
    from coord.v1 import auth_pb2 as a, cluster_pb2 as c, election_pb2 as e, kv_pb2 as k, lease_pb2 as le, lock_pb2 as lo, ring_pb2 as r
    from coord.v1 import maintenance_pb2 as m
    from coord_server.auth.interceptor import AUTHENTICATE

    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (a, c, e, k, le, lo, r, m) for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == set(_BY_METHOD) | AUTHENTICATED_ONLY | {AUTHENTICATE}


def test_another_users_lease_is_refused(clients: dict[str, Client]) -> None:
    """A lease belongs to the user that granted it: another user may not inspect, keep
    alive or revoke it (docs/security.md); an admin may."""
    writer, reader = clients["writer_a"], clients["reader"]
    lease = writer.grant_lease(60)
    writer.put("a/leased", "x", lease=lease)
    with pytest.raises(errors.PermissionDenied, match="belongs to user 'writer'"):
        reader.lease_info(lease.id)
    with pytest.raises(errors.PermissionDenied, match="belongs to user 'writer'"):
        reader.revoke_lease(lease.id)  # the ID: a Lease object revokes through its own client
    assert value_of(clients, "a/leased") == b"x"
    assert clients["root"].lease_info(lease.id).granted_ttl >= 60
    writer.revoke_lease(lease)
    assert value_of(clients, "a/leased") is None


def test_revoking_a_lease_ends_nothing_of_another_user_and_attachments_need_read(
    clients: dict[str, Client],
) -> None:
    """Revoking a lease releases its locks: a user cannot end someone else's hold by
    revoking a lease ID it can see. Listing a lease's keys (attachments) needs read on
    them, for the lease's owner too."""
    locker, writer = clients["lockers"], clients["writer_a"]
    lease = locker.grant_lease(60)
    with locker.lock("jobs/revoked", lease=lease) as held:
        with pytest.raises(errors.PermissionDenied, match="belongs to user"):
            writer.revoke_lease(lease.id)
        assert held.is_held and [h.lease for h in locker.lock_info("jobs/revoked").holders] == [lease.id]
    keyed = writer.grant_lease(60)
    writer.put("a/attached", "x", lease=keyed)
    with pytest.raises(errors.PermissionDenied):
        locker.lease_info(keyed.id, attachments=True)
    assert writer.lease_info(keyed, attachments=True).keys == (b"a/attached",)
    writer.revoke_lease(keyed)
    locker.revoke_lease(lease)


def test_listing_a_leases_locks_elections_and_ring_members_needs_read_on_them(clients: dict[str, Client]) -> None:
    """TimeToLive with attachments names the lease's locks, elections and ring members
    too: a user must be allowed to read each, as for its keys; and, the lease being
    someone's, only its owner (or an admin) may ask at all."""
    root, writer, locker = clients["root"], clients["writer_a"], clients["lockers"]
    lease = locker.grant_lease(60)
    try:
        with locker.lock("jobs/attached", lease=lease):
            locker.ring_join("jobs/ring", "m1", lease=lease)
            with pytest.raises(errors.PermissionDenied, match="belongs to user 'locker'"):
                writer.lease_info(lease.id, attachments=True)
            info = locker.lease_info(lease, attachments=True)  # locks, rings on jobs/: readwrite
            assert info.locks == ("jobs/attached",) and info.ring_members == (("jobs/ring", "m1"),)
            assert root.lease_info(lease.id, attachments=True).locks == ("jobs/attached",)
    finally:
        locker.revoke_lease(lease)


def test_a_member_joins_a_cluster_with_auth_on_with_an_admin_token(
    module_cluster, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    cluster: Cluster = module_cluster(1, auth=True)
    monkeypatch.setenv("COORD_TOKEN", TOKENS["reader"])  # not an admin: refused
    refused = cluster.add_member("n2")
    assert refused.proc is not None and refused.proc.wait(timeout=90) != 0
    assert "PERMISSION_DENIED" in cluster.log_tail("n2")
    del cluster.nodes["n2"]
    monkeypatch.setenv("COORD_TOKEN", TOKENS["root"])
    cluster.add_member("n3")
    cluster.wait_for_status("n3", lambda s: s.leader != 0, timeout=60)  # type: ignore[arg-type]
    members = cluster.stub("n1", cluster_pb2_grpc.ClusterStub).MemberList(cluster_pb2.ClusterMemberListRequest(), timeout=10)
    assert sorted(m.name for m in members.members) == ["n1", "n3"]


def test_server_streams_and_keepalive_streams_are_checked(cluster: Cluster) -> None:
    address = next(iter(cluster.nodes.values())).address
    from coord.v1 import lease_pb2, lease_pb2_grpc

    def first_code(call: Callable[[], Iterator[object]]) -> grpc.StatusCode:
        try:
            for _ in call():
                return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    writer = channel_as(address, TOKENS["writer_a"])
    assert first_code(lambda: election_pb2_grpc.ElectionStub(writer).Observe(
        election_pb2.ElectionObserveRequest(name="jobs/e"), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    assert first_code(lambda: ring_pb2_grpc.RingStub(writer).Watch(
        ring_pb2.RingWatchRequest(ring="jobs/r"), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    reader = channel_as(address, TOKENS["reader"])
    assert first_code(lambda: ring_pb2_grpc.RingStub(reader).Watch(
        ring_pb2.RingWatchRequest(ring="jobs/r"), timeout=10)) == grpc.StatusCode.OK
    lease_id = lease_pb2_grpc.LeaseStub(reader).Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10).id
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), (TOKENS["reader"], grpc.StatusCode.OK)):
        keepalive = lease_pb2_grpc.LeaseStub(channel_as(address, token)).KeepAlive
        assert first_code(lambda: keepalive(iter([lease_pb2.LeaseKeepAliveRequest(id=lease_id)]), timeout=10)) == code
    # Another user's lease cannot be renewed, alone or hidden among the caller's own in one
    # request that carries many.
    own = lease_pb2_grpc.LeaseStub(writer).Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10).id
    keepalive = lease_pb2_grpc.LeaseStub(writer).KeepAlive
    for request in (lease_pb2.LeaseKeepAliveRequest(id=lease_id), lease_pb2.LeaseKeepAliveRequest(ids=[own, lease_id])):
        assert first_code(lambda: keepalive(iter([request]), timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    assert first_code(lambda: keepalive(iter([lease_pb2.LeaseKeepAliveRequest(ids=[own])]), timeout=10)) == grpc.StatusCode.OK
    for channel in (writer, reader):
        channel.close()


def test_client_ring_and_election_calls_raise_permission_denied(clients: dict[str, Client]) -> None:
    writer, locker = clients["writer_a"], clients["lockers"]
    with pytest.raises(errors.PermissionDenied):
        writer.ring_view("jobs/r").start()
    with pytest.raises(errors.PermissionDenied):
        writer.ring_join("jobs/r", "m1", "127.0.0.1:1")
    with pytest.raises(errors.PermissionDenied):
        writer.leader("jobs/e")
    view = locker.ring_view("jobs/r").start()
    try:
        locker.ring_join("jobs/r", "m1", "127.0.0.1:1")
        assert view.wait_for_version(1, timeout=20).members
        locker.ring_leave("jobs/r", "m1")
    finally:
        view.close()


def test_the_auth_file_became_the_replicated_auth_state(cluster: Cluster, clients: dict[str, Client]) -> None:
    """The members' auth file is the cluster's first auth state (a bootstrap): its users
    and roles are listed by the Auth service, and users added at run time work on every
    member at once, with the file's tokens still valid."""
    root = clients["root"]
    assert root.auth.status().enabled
    assert root.auth.user_list() == ["locker", "reader", "root", "writer"]
    assert root.auth.role_list() == ["admin", "lockers", "reader", "writer_a"]
    assert root.auth.user_get("writer").roles == ("writer_a",)
    assert [(p.kind, p.prefix, p.access) for p in root.auth.role_get("writer_a").permissions] == [
        ("keys", b"a/", "readwrite"),
    ]
    with pytest.raises(errors.PermissionDenied):
        clients["reader"].auth.user_list()
    root.auth.user_add("late", "late-password-1")
    root.auth.user_grant_role("late", "writer_a")
    token = clients["none"].auth.authenticate("late", "late-password-1")
    for node in cluster.nodes.values():
        with Client(node.address, token=token, timeout=20) as late:
            late.put("a/late", node.name)
    root.auth.user_delete("late")
    with Client(endpoints(cluster), token=token, timeout=20) as late:
        with pytest.raises(errors.Unauthenticated):
            late.get("a/late")
    assert clients["writer_a"].get("a/late") is not None  # the file's tokens still work

"""The replicated auth state: users, roles, tokens through commands, the check every
command passes again when applied, lease ownership, snapshots (coord_server/state/auth.py,
authorize.py)."""

from __future__ import annotations

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import auth_pb2, election_pb2, kv_pb2, lease_pb2, lock_pb2, ring_pb2
from coord_server.auth.passwords import hash_password, token_sha256
from coord_server.state import StateMachine

from .driver import Driver

DENIED = grpc.StatusCode.PERMISSION_DENIED
HASH = hash_password("secret-password")


def perm(kind: int, prefix: bytes, write: bool = True) -> auth_pb2.Permission:
    access = auth_pb2.ACCESS_READWRITE if write else auth_pb2.ACCESS_READ
    return auth_pb2.Permission(kind=kind, prefix=prefix, access=access)  # type: ignore[arg-type]


def auth_ok(d: Driver, user: str = "", **op: object) -> command_pb2.AuthChangeResult:
    return d.ok(d.apply(command_pb2.Command(user=user, **op)))  # type: ignore[arg-type]


def as_user(d: Driver, user: str, **op: object) -> command_pb2.CommandResult:
    return d.apply(command_pb2.Command(user=user, **op))  # type: ignore[arg-type]


def setup_users(d: Driver) -> None:
    """root (admin) and app (readwrite on app/ keys, locks, elections, rings), auth on."""
    auth_ok(d, role_add=auth_pb2.AuthRoleAddRequest(name="root", admin=True))
    auth_ok(d, role_add=auth_pb2.AuthRoleAddRequest(name="app"))
    for kind in (auth_pb2.PERMISSION_KIND_KEYS, auth_pb2.PERMISSION_KIND_LOCKS,
                 auth_pb2.PERMISSION_KIND_ELECTIONS, auth_pb2.PERMISSION_KIND_RINGS):
        auth_ok(d, role_grant_permission=auth_pb2.AuthRoleGrantPermissionRequest(name="app", permission=perm(kind, b"app/")))
    for name, role in (("root", "root"), ("alice", "app"), ("bob", "app")):
        auth_ok(d, user_add=command_pb2.UserAdd(name=name, password=HASH))
        auth_ok(d, user_grant_role=auth_pb2.AuthUserGrantRoleRequest(name=name, role=role))
    auth_ok(d, auth_enable=auth_pb2.AuthEnableRequest())


def put(key: bytes, lease: int = 0) -> dict[str, object]:
    return {"put": kv_pb2.PutRequest(key=key, value=b"v", lease=lease)}


def test_enable_refused_without_an_admin_user() -> None:
    d = Driver()
    auth_ok(d, role_add=auth_pb2.AuthRoleAddRequest(name="root", admin=True))
    auth_ok(d, user_add=command_pb2.UserAdd(name="root", password=HASH))
    assert d.code(d.cmd(auth_enable=auth_pb2.AuthEnableRequest())) == grpc.StatusCode.FAILED_PRECONDITION
    assert not d.sm.auth.enabled
    auth_ok(d, user_grant_role=auth_pb2.AuthUserGrantRoleRequest(name="root", role="root"))
    auth_ok(d, auth_enable=auth_pb2.AuthEnableRequest())
    assert d.sm.auth.enabled


def test_commands_are_checked_at_apply_against_the_state_at_their_index() -> None:
    d = Driver()
    setup_users(d)
    assert d.ok(as_user(d, "alice", **put(b"app/x")))
    assert d.code(as_user(d, "alice", **put(b"other/x"))) == DENIED
    assert d.code(d.cmd(**put(b"app/y"))) == DENIED, "no user while auth is on"
    assert d.code(as_user(d, "mallory", **put(b"app/y"))) == DENIED, "unknown user"
    # A revoke applied before the write: the write fails, nothing written.
    auth_ok(d, user="root", user_revoke_role=auth_pb2.AuthUserRevokeRoleRequest(name="alice", role="app"))
    revision = d.sm.revision
    assert d.code(as_user(d, "alice", **put(b"app/x"))) == DENIED
    assert d.sm.revision == revision and d.value(b"app/x") == b"v"
    # Auth changes need an admin, at apply too.
    assert d.code(as_user(d, "bob", role_add=auth_pb2.AuthRoleAddRequest(name="x"))) == DENIED
    # Admins may do anything; turning auth off opens everything again.
    assert d.ok(as_user(d, "root", **put(b"other/x")))
    auth_ok(d, user="root", auth_disable=auth_pb2.AuthDisableRequest())
    assert d.ok(d.cmd(**put(b"other/y")))


def test_permission_revoked_from_the_role_and_role_deleted() -> None:
    d = Driver()
    setup_users(d)
    auth_ok(d, user="root", role_revoke_permission=auth_pb2.AuthRoleRevokePermissionRequest(
        name="app", kind=auth_pb2.PERMISSION_KIND_KEYS, prefix=b"app/"))
    assert d.code(as_user(d, "alice", **put(b"app/x"))) == DENIED
    assert d.ok(as_user(d, "alice", lock_acquire=lock_pb2.LockAcquireRequest(
        name="app/l", lease=d.ok(as_user(d, "alice", lease_grant=lease_pb2.LeaseGrantRequest(ttl=10))).id)))
    auth_ok(d, user="root", role_delete=auth_pb2.AuthRoleDeleteRequest(name="app"))
    assert d.sm.auth.principal("alice").roles == ()  # type: ignore[union-attr]
    assert d.code(as_user(d, "alice", lock_release=lock_pb2.LockReleaseRequest(name="app/l", token=1))) == DENIED


def test_no_change_may_leave_no_admin_while_auth_is_on() -> None:
    d = Driver()
    setup_users(d)
    fp = grpc.StatusCode.FAILED_PRECONDITION
    assert d.code(as_user(d, "root", user_delete=auth_pb2.AuthUserDeleteRequest(name="root"))) == fp
    assert d.code(as_user(d, "root", user_revoke_role=auth_pb2.AuthUserRevokeRoleRequest(name="root", role="root"))) == fp
    assert d.code(as_user(d, "root", role_delete=auth_pb2.AuthRoleDeleteRequest(name="root"))) == fp
    assert d.sm.auth.principal("root").admin  # type: ignore[union-attr]


def test_tokens_are_kept_as_digests_and_dropped_with_the_password() -> None:
    d = Driver()
    setup_users(d)
    user = d.sm.auth.user("alice")
    digest = token_sha256("tok-1")
    issue = command_pb2.TokenIssue(name="alice", digest=digest, password_index=user.password_index)
    auth_ok(d, token_issue=issue)  # no user: Authenticate proposes it; its proof is password_index
    assert d.sm.auth.user_of_token(digest).name == "alice"  # type: ignore[union-attr]
    assert b"tok-1" not in d.sm.snapshot()
    auth_ok(d, user="root", user_change_password=command_pb2.UserAdd(name="alice", password=hash_password("new")))
    assert d.sm.auth.user_of_token(digest) is None
    # An Authenticate that checked the old password is stale once the new one is applied.
    stale = command_pb2.TokenIssue(name="alice", digest=token_sha256("tok-2"), password_index=issue.password_index)
    assert d.code(d.cmd(token_issue=stale)) == DENIED
    for i in range(20):
        fresh = command_pb2.TokenIssue(name="alice", digest=token_sha256(f"t{i}"),
                                       password_index=d.sm.auth.user("alice").password_index)
        auth_ok(d, token_issue=fresh)
    assert len(d.sm.auth.user("alice").tokens) == 16
    assert d.sm.auth.user_of_token(token_sha256("t0")) is None and d.sm.auth.user_of_token(token_sha256("t19"))


def test_passwords_never_in_clear_in_log_state_or_snapshot() -> None:
    d = Driver()
    setup_users(d)
    snap = d.sm.snapshot()
    assert b"secret-password" not in snap
    assert HASH.hash in snap and HASH.salt in snap


def test_leases_belong_to_their_granter() -> None:
    d = Driver()
    setup_users(d)
    mine = d.ok(as_user(d, "alice", lease_grant=lease_pb2.LeaseGrantRequest(ttl=10))).id
    assert d.sm.lease_owner(mine) == "alice"
    # bob may bind nothing to alice's lease, nor revoke it, though his roles allow the names
    assert d.code(as_user(d, "bob", **put(b"app/b", lease=mine))) == DENIED
    assert d.code(as_user(d, "bob", lock_acquire=lock_pb2.LockAcquireRequest(name="app/l", lease=mine))) == DENIED
    assert d.code(as_user(d, "bob", election_campaign=election_pb2.ElectionCampaignRequest(name="app/e", lease=mine))) == DENIED
    assert d.code(as_user(d, "bob", ring_join=ring_pb2.RingJoinRequest(ring="app/r", lease=mine, member_id="m", address="a:1"))) == DENIED
    txn = kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"app/t", lease=mine))])
    assert d.code(as_user(d, "bob", txn=txn)) == DENIED
    assert d.code(as_user(d, "bob", lease_revoke=lease_pb2.LeaseRevokeRequest(id=mine))) == DENIED
    # alice may; an admin may too
    assert d.ok(as_user(d, "alice", **put(b"app/a", lease=mine)))
    assert d.ok(as_user(d, "alice", lock_acquire=lock_pb2.LockAcquireRequest(name="app/l", lease=mine)))
    assert d.ok(as_user(d, "root", lease_revoke=lease_pb2.LeaseRevokeRequest(id=mine)))
    assert d.value(b"app/a") is None


def test_an_ownerless_lease_is_only_an_admins_once_auth_is_on() -> None:
    d = Driver()
    old = d.grant(10).id
    setup_users(d)
    assert d.sm.lease_owner(old) == ""
    assert d.code(as_user(d, "alice", lease_revoke=lease_pb2.LeaseRevokeRequest(id=old))) == DENIED
    assert d.ok(as_user(d, "root", lease_revoke=lease_pb2.LeaseRevokeRequest(id=old)))


def test_internal_commands_pass_while_auth_is_on() -> None:
    d = Driver()
    setup_users(d)
    lease = d.ok(as_user(d, "alice", lease_grant=lease_pb2.LeaseGrantRequest(ttl=10))).id
    assert d.ok(d.expire(lease)).revoked == [lease]


def test_bootstrap_applies_once() -> None:
    d = Driver()
    first = command_pb2.AuthRecord(enabled=True, roles=[command_pb2.RoleRecord(name="ops", admin=True)],
                                   users=[command_pb2.UserRecord(name="op", roles=["ops"], token_digests=[token_sha256("op-token")])])
    assert d.ok(d.cmd(auth_bootstrap=first)).applied
    second = command_pb2.AuthRecord(enabled=False, users=[command_pb2.UserRecord(name="other")])
    assert not d.ok(d.cmd(auth_bootstrap=second)).applied
    assert d.sm.auth.enabled and d.sm.auth.user_names() == ["op"]
    assert d.sm.auth.user_of_token(token_sha256("op-token")).admin  # type: ignore[union-attr]


def test_snapshot_round_trip_keeps_auth_and_owners() -> None:
    d = Driver()
    setup_users(d)
    lease = d.ok(as_user(d, "alice", lease_grant=lease_pb2.LeaseGrantRequest(ttl=10))).id
    snap = d.sm.snapshot()
    restored = StateMachine.restore(snap)
    assert restored.snapshot() == snap
    assert restored.auth.enabled and restored.lease_owner(lease) == "alice"
    r = Driver(restored)
    assert r.code(as_user(r, "bob", **put(b"app/x", lease=lease))) == DENIED
    assert r.ok(as_user(r, "alice", **put(b"app/x", lease=lease)))


def test_a_state_without_auth_snapshots_as_before() -> None:
    d = Driver()
    d.put(b"k", b"v")
    assert not command_pb2.StateSnapshot.FromString(d.sm.snapshot()).HasField("auth")


@pytest.mark.parametrize("op", [
    {"user_add": command_pb2.UserAdd(name="")},
    {"role_add": auth_pb2.AuthRoleAddRequest(name="x" * 300)},
    {"role_grant_permission": auth_pb2.AuthRoleGrantPermissionRequest(name="nobody", permission=perm(1, b""))},
    {"user_grant_role": auth_pb2.AuthUserGrantRoleRequest(name="nobody", role="r")},
    {"user_add": command_pb2.UserAdd(name="u", password=command_pb2.PasswordHash(salt=b"s", hash=b"h"))},
])
def test_bad_auth_commands_are_refused_and_change_nothing(op: dict[str, object]) -> None:
    d = Driver()
    before = d.sm.auth.record()
    assert d.code(d.cmd(**op)) in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert d.sm.auth.record() == before

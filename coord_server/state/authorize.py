"""The check a command passes again when it is applied, while auth is on (etcd's
apply-time permission check).

Why again: the member that accepted the call checked it against its own view of the auth
state, and the command then waited in the log. A role revoked, a user deleted or auth
turned on in between is decided by the log order: a command applied after the change is
checked against it, so a revoked permission cannot race a write already in flight.

What a command needs is what its public call needs at the edge (coord_server/auth,
docs/security.md), from the same rules (permissions.py), plus lease ownership: a
lease belongs to the user that granted it, and only that user (or an admin) may revoke
it or bind a key, a lock, a candidacy or a ring member to it. A lease granted while auth
was off belongs to nobody: only an admin may use it once auth is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from coord.v1 import kv_pb2

from coord_server.errors import PermissionDenied
from .permissions import ADMIN, WHOLE_KEY_SPACE, Need, Principal, key_need, kv_op_needs, name_need

INTERNAL_OPS = frozenset({"lease_expire", "lock_cancel", "election_cancel"})
"""Proposed by the members themselves, on nobody's behalf: expiry by the leader's clock,
and a queue leaving after its call ended."""

SELF_CHECKED_OPS = frozenset({"token_issue", "auth_bootstrap"})
"""token_issue carries its own proof (the password Authenticate checked, and the index
at which it was set); auth_bootstrap takes effect only while the auth state is unset."""

AUTH_OPS = frozenset({
    "auth_enable", "auth_disable", "user_add", "user_delete", "user_change_password",
    "user_grant_role", "user_revoke_role", "role_add", "role_delete",
    "role_grant_permission", "role_revoke_permission", "token_issue", "auth_bootstrap",
})


class LeaseView(Protocol):
    """What the check reads of the state machine."""

    def lease_owner(self, lease_id: int) -> str | None: ...

    def lease_info(self, lease_id: int) -> Any: ...

    def lease_bindings(self, lease_id: int) -> tuple[list[str], list[str], list[str]]: ...


def authorize(principal: Principal | None, user: str, which: str, op: Any, state: LeaseView) -> None:
    """PermissionDenied unless ``user`` (``principal``: its current grants, None when no
    such user exists) may apply command ``which`` with operation ``op``."""
    if which in INTERNAL_OPS or which in SELF_CHECKED_OPS:
        return
    if principal is None:
        if not user:
            raise PermissionDenied("auth is enabled: the command was accepted without a user, so it is refused")
        raise PermissionDenied(f"user {user!r} no longer exists")
    if principal.admin:
        return
    for need in needs_of_command(which, op, state):
        if not principal.allows(need.kind, need.span, need.write):
            raise PermissionDenied(
                f"user {principal.name!r} may not {which}: it needs {need.describe()} (checked when applied)"
            )
    for lease_id in leases_bound(which, op):
        check_lease_owner(principal, lease_id, state)


def check_lease_owner(principal: Principal, lease_id: int, state: LeaseView) -> None:
    """PermissionDenied unless ``principal`` owns lease ``lease_id`` or is an admin; a
    lease that does not exist passes (the command then fails with NOT_FOUND)."""
    owner = state.lease_owner(lease_id)
    if owner is None or principal.admin or owner == principal.name:
        return
    whose = f"user {owner!r}" if owner else "nobody (it was granted while auth was off); only an admin may use it"
    raise PermissionDenied(f"user {principal.name!r} may not use lease {lease_id}: it belongs to {whose}")


def needs_of_command(which: str, op: Any, state: LeaseView) -> list[Need]:
    if which in AUTH_OPS:
        return [ADMIN]
    if which == "lease_grant":
        return []
    if which == "lease_revoke":
        return _lease_revoke_needs(op.id, state)
    if which == "compact":
        return [Need("keys", WHOLE_KEY_SPACE, True)]
    if which == "election_campaign":
        return [name_need("elections", op.name, True)]
    if which in ("election_proclaim", "election_resign"):
        return [name_need("elections", op.leader.name, True)]
    if which in ("ring_join", "ring_leave"):
        return [name_need("rings", op.ring, True)]
    return kv_op_needs(which, op)  # put, delete_range, txn, lock_acquire, lock_release; else ADMIN


def _lease_revoke_needs(lease_id: int, state: LeaseView) -> list[Need]:
    """Revoking deletes the lease's keys and ends its locks, candidacies and ring
    memberships: write on each (as at the edge, coord_server/auth/requirements.py)."""
    if state.lease_owner(lease_id) is None:
        return []
    locks, elections, rings = state.lease_bindings(lease_id)
    return [
        *(key_need(key, b"", True) for key in state.lease_info(lease_id).keys),
        *(name_need("locks", name, True) for name in locks),
        *(name_need("elections", name, True) for name in elections),
        *(name_need("rings", name, True) for name in rings),
    ]


def leases_bound(which: str, op: Any) -> Iterator[int]:
    """The leases command ``which`` revokes or binds something to."""
    if which == "lease_revoke":
        yield op.id
    elif which == "put":
        if op.lease:
            yield op.lease
    elif which == "txn":
        yield from _txn_leases(op)
    elif which in ("lock_acquire", "election_campaign", "ring_join"):
        if op.lease:
            yield op.lease
    elif which in ("election_proclaim", "election_resign"):
        yield op.leader.lease


def _txn_leases(txn: kv_pb2.TxnRequest) -> Iterator[int]:
    for req in (*txn.success, *txn.failure):
        kind = req.WhichOneof("request")
        if kind == "request_put" and req.request_put.lease:
            yield req.request_put.lease
        elif kind == "request_txn":
            yield from _txn_leases(req.request_txn)

"""Leases belong to the user that granted them: the edge half of the check.

Revoke, and binding a key, lock, candidacy or ring member to a lease, are checked again
when applied (coord_server/state/authorize.py). KeepAlive and TimeToLive never reach the
log, so this is their only check: another user's lease answers PERMISSION_DENIED (an
admin may use any lease). Kept apart from the Lease service so that the service's
KeepAlive path can change without touching it.
"""

from __future__ import annotations

from typing import Any

from coord_server.member import Member
from coord_server.services.common import read_barrier
from coord_server.state import authorize

from .admission import Admission

LEASE_OWNED_METHODS = frozenset({
    "/coord.v1.Lease/Revoke", "/coord.v1.Lease/TimeToLive", "/coord.v1.Lease/KeepAlive",
})


async def check_lease_owner(admission: Admission, node: Member, lease_id: int, context: Any = None) -> None:
    """PERMISSION_DENIED unless the caller owns lease ``lease_id`` (or is an admin, or auth
    is off). A lease this member does not know yet (granted on the leader, not applied
    here) is looked up again after a ReadIndex round; one that does not exist passes
    (the call then answers as for any unknown lease)."""
    principal = admission.principal
    if principal is None or principal.admin:
        return
    if node.state.lease_owner(lease_id) is None:
        await read_barrier(node, context)
    authorize.check_lease_owner(principal, lease_id, node.state)  # PermissionDenied

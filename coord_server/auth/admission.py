"""One call's admission: who is calling, and the checks every request of the call passes.

The interceptor (``coord_server.auth.interceptor``) makes an ``Admission`` per call and
puts it in the ``CURRENT`` context variable before the servicer runs, so code deep in a
servicer can check what only it sees: ``check_pipeline_op`` checks one op of a
KV.Pipeline stream, whose failure must be that op's result, not the end of the stream.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from coord_server.errors import PermissionDenied, Unauthenticated
from coord_server.state.permissions import Need, Principal, kv_op_needs

from .quota import Quota
from .requirements import needs_of


@dataclass(frozen=True)
class Admission:
    principal: Principal | None
    """The caller; None when auth is disabled (everything is allowed)."""
    client: str
    """Whom per-client limits count: the user, or the connection's peer address."""
    quota: Quota
    token: str = ""
    """The bearer token the caller sent, to look its user up again (``recheck``)."""
    auth: Any = None
    """The member's RuntimeAuth (None when auth is off)."""
    leases: Any = None
    """The port's LeaseLimit, for a Pipeline's lease_grant ops (None: no limit)."""

    def check(self, method: str, request: Any) -> None:
        """PERMISSION_DENIED or RESOURCE_EXHAUSTED for ``request`` sent to ``method``."""
        if self.principal is not None:
            self._require(needs_of(method, request, self.quota.node.state), method.rsplit("/", 1)[-1])
        self.quota.check_method(method, request)

    def check_op(self, which: str, request: Any) -> None:
        """The same for one KV operation of a Pipeline stream."""
        if self.principal is not None:
            self._require(kv_op_needs(which, request), which)
        self.quota.check_op(which, request)

    def recheck(self, method: str, request: Any, op: bool = False) -> None:
        """Check ``request`` again against the auth state as of now. A read calls it after
        its ReadIndex round: a permission revoked before the read point then holds even on
        a member that had not applied the revoke when the call arrived (as etcd checks a
        linearizable read after its read index). Free when nothing changed: the state
        hands out the same Principal object until an auth change."""
        if self.principal is None or self.auth is None:
            return
        principal = self.auth.authenticate(self.token)
        if principal is self.principal:
            return
        if principal is None:
            raise Unauthenticated("the bearer token is no longer valid for this cluster")
        again = Admission(principal, self.client, self.quota)
        again._require(kv_op_needs(method, request) if op else needs_of(method, request, self.quota.node.state),
                       method.rsplit("/", 1)[-1])

    def _require(self, needs: list[Need], what: str) -> None:
        principal = self.principal
        assert principal is not None
        for need in needs:
            if not principal.allows(need.kind, need.span, need.write):
                raise PermissionDenied(f"user {principal.name!r} may not {what}: it needs {need.describe()}")


CURRENT: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("coord_admission", default=None)


def recheck_pipeline_op(which: str, request: Any) -> None:
    """``Admission.recheck`` for one Pipeline op, after its ReadIndex round."""
    admission = CURRENT.get()
    if admission is not None:
        admission.recheck(which, request, op=True)


def check_pipeline_op(which: str, request: Any) -> None:
    """Check one Pipeline op against the current call's Admission (none: not intercepted,
    as in servicer unit tests, so nothing to check)."""
    admission = CURRENT.get()
    if admission is not None:
        admission.check_op(which, request)
        admission.recheck(which, request, op=True)  # the roles as of now: a stream outlives auth changes

"""The client's exceptions: one small hierarchy, mapped from gRPC status codes.

Every exception the library raises for a failed call is a :class:`CoordError`; it carries
the gRPC ``code`` (None for errors decided by the client itself) and ``details``, the
server's own message. The mapping follows common.proto's error list:

==================== ========================================================
status code          exception
==================== ========================================================
INVALID_ARGUMENT     InvalidArgument
NOT_FOUND            NotFound (LeaseNotFound for lease operations)
FAILED_PRECONDITION  FailedPrecondition (LockNotHeld for Lock.Release,
                     LeadershipLost for Proclaim/Resign)
OUT_OF_RANGE         RevisionOutOfRange (Compacted when history is gone)
UNAVAILABLE          Unavailable (NotLeader when a member named the leader)
DEADLINE_EXCEEDED    DeadlineExceeded (also a ``TimeoutError``)
RESOURCE_EXHAUSTED   ResourceExhausted
CANCELLED            Cancelled
anything else        InternalError
==================== ========================================================

Client-side conditions: :class:`LeaseLost` (a lease this client kept alive ended),
with :class:`LockLost` and :class:`LeadershipLost` for locks and elections, and
:class:`ClientClosed`.

Ambiguity (hashicorp/raft's ``ErrLeadershipLost`` lesson): a write that fails with
``Unavailable`` or ``DeadlineExceeded`` after the client's retries *may* have been applied.
The client retries a write with the same ``coord-client-id``/``coord-seq``, so a retry never
applies it twice; but once the error reaches you, only reading the state tells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import grpc

__all__ = [
    "Cancelled",
    "ClientClosed",
    "Compacted",
    "CoordError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InternalError",
    "InvalidArgument",
    "LeadershipLost",
    "LeaseLost",
    "LeaseNotFound",
    "LockLost",
    "LockNotHeld",
    "NotFound",
    "NotLeader",
    "PermissionDenied",
    "ResourceExhausted",
    "RevisionOutOfRange",
    "Unauthenticated",
    "Unavailable",
    "error_from_rpc",
    "leader_hint",
]

LEADER_METADATA_KEY = "coord-leader"
_COMPACT_REVISION = re.compile(r"compact(?:ed)? revision is (\d+)")


class CoordError(Exception):
    """Base of every coord client error. ``code`` is the gRPC status code of the failed
    call (None when the client decided), ``details`` the server's message."""

    default_code: grpc.StatusCode | None = None

    def __init__(self, details: str = "", *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.code = code if code is not None else self.default_code

    def __str__(self) -> str:
        return self.details or type(self).__name__


class InvalidArgument(CoordError, ValueError):
    """The request is malformed: an empty or oversized key, a bad TTL, an unknown enum."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CoordError, LookupError):
    """The named lease, ring, ring member or cluster member does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class LeaseNotFound(NotFound):
    """The lease does not exist (any more): it expired, was revoked, or never existed."""


LEASE_REFINE: dict[grpc.StatusCode, type[CoordError]] = {grpc.StatusCode.NOT_FOUND: LeaseNotFound}
"""For calls that name a lease: NOT_FOUND means the lease (a transport ``refine``)."""


class FailedPrecondition(CoordError):
    """The request is valid but the current state forbids it."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class LockNotHeld(FailedPrecondition):
    """The lock is not held with that fencing token (released, or its lease ended)."""


class RevisionOutOfRange(CoordError):
    """A revision that is compacted away, or that is in the future."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Compacted(RevisionOutOfRange):
    """The history asked for was compacted. ``compacted_revision`` is the oldest revision
    still available when the server said so (0 when unknown): read the current state and
    watch again from there."""

    def __init__(self, details: str = "", *, code: grpc.StatusCode | None = None, compacted_revision: int = 0) -> None:
        super().__init__(details, code=code)
        self.compacted_revision = compacted_revision


class Unavailable(CoordError):
    """No member could serve the call within its deadline (no leader, nodes down). A write
    may or may not have been applied."""

    default_code = grpc.StatusCode.UNAVAILABLE


class NotLeader(Unavailable):
    """The member is not the leader and could not forward; ``leader`` is the address it
    named (the client follows it by itself; you see this only when retries ran out)."""

    def __init__(self, details: str = "", *, code: grpc.StatusCode | None = None, leader: str = "") -> None:
        super().__init__(details, code=code)
        self.leader = leader


class DeadlineExceeded(CoordError, TimeoutError):
    """The call's deadline passed. A write may or may not have been applied; a lock or an
    election was not won in time."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(CoordError):
    """A request over the size limit, or the storage quota is full."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(CoordError):
    """The cluster has authentication enabled and the call carried no token, or one it
    does not know (pass ``token=`` to the client, ``--token`` or $COORD_TOKEN to coordctl)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CoordError):
    """The token's user lacks the permission the operation needs; nothing was changed."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(CoordError):
    """The call was cancelled."""

    default_code = grpc.StatusCode.CANCELLED


class InternalError(CoordError):
    """Any other status: a bug on one side, reported with the server's message."""


class LeaseLost(CoordError):
    """A lease this client kept alive has ended: it expired (no keep-alive was confirmed
    within its TTL) or was revoked. Everything bound to it is gone."""


class LockLost(LeaseLost):
    """The lease of a held lock ended, so the lock was released while the block ran: work
    done since then was not protected by it."""


class LeadershipLost(LeaseLost, FailedPrecondition):
    """An election's leadership ended: its lease ended, or it was resigned elsewhere."""


class ClientClosed(CoordError):
    """The client was closed."""


_BY_CODE: dict[grpc.StatusCode, type[CoordError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: RevisionOutOfRange,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def shown(data: bytes) -> str:
    """A key for a message: quoted text ('app/x') when it is UTF-8, else hex (0x00ff), never
    a Python bytes repr."""
    try:
        return repr(data.decode())
    except UnicodeDecodeError:
        return "0x" + data.hex()


def leader_hint(err: Any) -> str:
    """The leader's address from the ``coord-leader`` trailing metadata of a failed call,
    or ""."""
    try:
        metadata = err.trailing_metadata()
    except Exception:  # noqa: BLE001 - a call that never started has none
        return ""
    return leader_hint_of(metadata)


def leader_hint_of(metadata: Any) -> str:
    """The ``coord-leader`` value in ``metadata``, or ""."""
    for key, value in metadata or ():
        if key == LEADER_METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def error_from_rpc(
    err: grpc.RpcError, refine: Mapping[grpc.StatusCode, type[CoordError]] | None = None
) -> CoordError:
    """The CoordError for a failed call. ``refine`` maps codes to more specific classes
    for the call at hand (e.g. NOT_FOUND -> LeaseNotFound for Lease.Revoke)."""
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details: str = (err.details() if hasattr(err, "details") else "") or ""
    cls = (refine or {}).get(code) or _BY_CODE.get(code, InternalError)
    if code == grpc.StatusCode.OUT_OF_RANGE and "compact" in details.lower():
        found = _COMPACT_REVISION.search(details)
        return Compacted(details, code=code, compacted_revision=int(found.group(1)) if found else 0)
    if cls is Unavailable:
        hint = leader_hint(err)
        if hint:
            return NotLeader(details or "not the leader", code=code, leader=hint)
    if cls is InternalError:
        details = f"{code.name}: {details}" if details else code.name
    return cls(details or code.name.lower().replace("_", " "), code=code)

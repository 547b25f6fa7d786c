"""etcd's errors, as etcd sends them: a gRPC code and an exact message.

Clients map errors by code and message (Go's rpctypes, python-etcd3's exceptions), so the
etcd API answers with etcd's wording, never coord's. ``EtcdError`` is raised by the etcd
services themselves; ``translate`` turns the error coord's own servicers answered with
into the status etcd would have sent for the same cause: by the error's class where
coord names the cause (coord_server/errors.py), by its code otherwise.
"""

from __future__ import annotations

import grpc

from coord_server.errors import (
    BadAddress,
    Code as CoordCode,
    Compacted,
    CoordError,
    DuplicateKey,
    EmptyKey,
    FutureRevision,
    LearnerNotCaughtUp,
    LearnerTransferee,
    MemberNotFound,
    NotALearner,
    NotEnoughStartedMembers,
    PeerAddressInUse,
    QuotaExhausted,
    RequestTooLarge,
    TooManyOperations,
    UnhealthyCluster,
)
from coord_server.status import grpc_status

Code = grpc.StatusCode


class EtcdError(Exception):
    """A status with etcd's code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _e(code: grpc.StatusCode, message: str) -> EtcdError:
    return EtcdError(code, message)


EMPTY_KEY = _e(Code.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = _e(Code.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = _e(Code.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = _e(Code.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = _e(Code.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = _e(Code.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
COMPACTED = _e(Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = _e(Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
NO_SPACE = _e(Code.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
LEASE_NOT_FOUND = _e(Code.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = _e(Code.OUT_OF_RANGE, "etcdserver: too large lease TTL")
PEER_URL_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
MEMBER_BAD_URLS = _e(Code.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
MEMBER_NOT_FOUND = _e(Code.NOT_FOUND, "etcdserver: member not found")
MEMBER_NOT_LEARNER = _e(Code.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
LEARNER_NOT_READY = _e(
    Code.FAILED_PRECONDITION, "etcdserver: can only promote a learner member which is in sync with leader"
)
REQUEST_TOO_LARGE = _e(Code.INVALID_ARGUMENT, "etcdserver: request is too large")
TOO_MANY_REQUESTS = _e(Code.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
AUTH_FAILED = _e(Code.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
AUTH_NOT_ENABLED = _e(Code.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
PERMISSION_DENIED = _e(Code.PERMISSION_DENIED, "etcdserver: permission denied")
INVALID_AUTH_TOKEN = _e(Code.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = _e(Code.INVALID_ARGUMENT, "etcdserver: invalid auth management")
USER_EMPTY = _e(Code.INVALID_ARGUMENT, "etcdserver: user name is empty")
ROLE_EMPTY = _e(Code.INVALID_ARGUMENT, "etcdserver: role name is empty")
ROOT_USER_NOT_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: user name already exists")
USER_NOT_FOUND = _e(Code.FAILED_PRECONDITION, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = _e(Code.FAILED_PRECONDITION, "etcdserver: role name already exists")
ROLE_NOT_FOUND = _e(Code.FAILED_PRECONDITION, "etcdserver: role name not found")
ROLE_NOT_GRANTED = _e(Code.FAILED_PRECONDITION, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = _e(Code.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role")
NO_LEADER = _e(Code.UNAVAILABLE, "etcdserver: no leader")
REQUEST_TIMEOUT = _e(Code.UNAVAILABLE, "etcdserver: request timed out")
STOPPED = _e(Code.UNAVAILABLE, "etcdserver: server stopped")
BAD_LEADER_TRANSFEREE = _e(Code.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
NOT_LEADER = _e(Code.FAILED_PRECONDITION, "etcdserver: not leader")
ELECTION_NO_LEADER = _e(Code.UNKNOWN, "election: no leader")
ELECTION_NOT_LEADER = _e(Code.UNKNOWN, "election: not leader")
NOT_ENOUGH_STARTED = _e(
    Code.FAILED_PRECONDITION, "etcdserver: re-configuration failed due to not enough started members"
)
UNHEALTHY = _e(Code.UNAVAILABLE, "etcdserver: unhealthy cluster")
NOT_CAPABLE = _e(Code.UNAVAILABLE, "etcdserver: not capable")


_BY_TYPE: tuple[tuple[type[CoordError], EtcdError], ...] = (
    (Compacted, COMPACTED),
    (FutureRevision, FUTURE_REV),
    (MemberNotFound, MEMBER_NOT_FOUND),
    (PeerAddressInUse, PEER_URL_EXIST),
    (NotALearner, MEMBER_NOT_LEARNER),
    (LearnerNotCaughtUp, LEARNER_NOT_READY),
    (LearnerTransferee, BAD_LEADER_TRANSFEREE),
    (NotEnoughStartedMembers, NOT_ENOUGH_STARTED),
    (UnhealthyCluster, UNHEALTHY),
    (EmptyKey, EMPTY_KEY),
    (TooManyOperations, TOO_MANY_OPS),
    (DuplicateKey, DUPLICATE_KEY),
    (BadAddress, MEMBER_BAD_URLS),
    (QuotaExhausted, NO_SPACE),
    (RequestTooLarge, REQUEST_TOO_LARGE),
)
"""coord's named causes (coord_server/errors.py) -> etcd's status for the same cause."""

_BY_CODE: dict[CoordCode, EtcdError] = {
    CoordCode.UNAUTHENTICATED: INVALID_AUTH_TOKEN,
    CoordCode.PERMISSION_DENIED: PERMISSION_DENIED,
}


def translate(error: CoordError, method: str = "") -> EtcdError:
    """The etcd status for the error coord answered ``method`` (a coord.v1 method name)
    with: by its class where coord names the cause, else by its code. What etcd has no
    wording for keeps coord's code and message."""
    for cls, etcd_error in _BY_TYPE:
        if isinstance(error, cls):
            return etcd_error
    code = error.code
    if code in _BY_CODE:
        return _BY_CODE[code]
    logged = _logged_refusal(code, error.message.lower())
    if logged is not None:
        return logged
    if code == CoordCode.UNAVAILABLE:
        return NO_LEADER
    return EtcdError(grpc_status(code), error.message)


def _logged_refusal(code: CoordCode, lower: str) -> EtcdError | None:
    """What the state machine refused as it applied the command: the refusal crossed the
    log as a CommandError, a code and a message only, so its cause is in the wording
    (coord_server/state), as is a stopping member's (node.py)."""
    if code == CoordCode.OUT_OF_RANGE:
        if "compact" in lower:
            return COMPACTED
        if "future" in lower:
            return FUTURE_REV
    elif code == CoordCode.NOT_FOUND:
        if "lease" in lower:
            return LEASE_NOT_FOUND
    elif code == CoordCode.FAILED_PRECONDITION:
        if "lease" in lower and "exists" in lower:
            return LEASE_EXIST
    elif code == CoordCode.INVALID_ARGUMENT:
        if "does not exist" in lower and ("ignore_value" in lower or "ignore_lease" in lower):
            return KEY_NOT_FOUND
    elif code == CoordCode.UNAVAILABLE:
        if "stopping" in lower or "stopped" in lower:
            return STOPPED
    return None

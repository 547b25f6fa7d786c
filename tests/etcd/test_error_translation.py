"""How the etcd gateway words coord's errors (coord_server/etcd/errors.py): by the
error's class where coord names the cause, by its code otherwise, never by coord's
wording, also for a refusal that crossed the log as a CommandError (its cause rides
along). No server: the translation and the in-process call path alone."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from coord.raft.v1 import command_pb2
from coord_server import errors as coord
from coord_server.etcd import errors
from coord_server.etcd.calls import CoordCalls
from coord_server.services.common import unary

NAMED = [
    (coord.Compacted(3, 9), errors.COMPACTED),
    (coord.FutureRevision(12, 9), errors.FUTURE_REV),
    (coord.MemberNotFound("gone"), errors.MEMBER_NOT_FOUND),
    (coord.PeerAddressInUse("taken"), errors.PEER_URL_EXIST),
    (coord.NotALearner("a voter"), errors.MEMBER_NOT_LEARNER),
    (coord.LearnerNotCaughtUp("behind"), errors.LEARNER_NOT_READY),
    (coord.LearnerTransferee("no"), errors.BAD_LEADER_TRANSFEREE),
    (coord.EmptyKey("no"), errors.EMPTY_KEY),
    (coord.TooManyOperations("no"), errors.TOO_MANY_OPS),
    (coord.DuplicateKey("no"), errors.DUPLICATE_KEY),
    (coord.BadAddress("no"), errors.MEMBER_BAD_URLS),
    (coord.QuotaExhausted("no"), errors.NO_SPACE),
    (coord.RequestTooLarge("no"), errors.REQUEST_TOO_LARGE),
    (coord.Unauthenticated("whatever"), errors.INVALID_AUTH_TOKEN),
    (coord.PermissionDenied("whatever"), errors.PERMISSION_DENIED),
    (coord.Unavailable("no leader elected yet"), errors.NO_LEADER),
]


@pytest.mark.parametrize(("error", "expected"), NAMED, ids=[type(e).__name__ for e, _ in NAMED])
def test_a_named_cause_gets_etcds_status_whatever_coords_wording(error: coord.CoordError, expected: errors.EtcdError) -> None:
    assert errors.translate(error) is expected


LOGGED = [  # each named cause the state machine or a stopping node refuses with
    (coord.Compacted(3, 9), errors.COMPACTED),
    (coord.FutureRevision(12, 9), errors.FUTURE_REV),
    (coord.CompactNotPositive("compact revision must be positive, got -1"), errors.COMPACTED),
    (coord.LeaseNotFound("lease 7 not found"), errors.LEASE_NOT_FOUND),
    (coord.LeaseExists("lease 7 already exists"), errors.LEASE_EXIST),
    (coord.KeyNotFound("ignore_value is set but key b'k' does not exist"), errors.KEY_NOT_FOUND),
    (coord.Stopping("the node is stopping"), errors.STOPPED),
    (coord.UserNotFound("user 'u' not found"), errors.USER_NOT_FOUND),
    (coord.RoleNotFound("role 'r' not found"), errors.ROLE_NOT_FOUND),
    (coord.RoleNotGranted("user 'u' does not have role 'r'"), errors.ROLE_NOT_GRANTED),
    (coord.PermissionNotGranted("role 'r' has no keys permission on prefix b'a'"), errors.PERMISSION_NOT_GRANTED),
    (coord.UserExists("user 'u' already exists"), errors.USER_ALREADY_EXIST),
    (coord.RoleExists("role 'r' already exists"), errors.ROLE_ALREADY_EXIST),
    (coord.NoAdmin("this would leave no user with an admin role"), errors.INVALID_AUTH_MGMT),
    (coord.EmptyUserName("user name must not be empty"), errors.USER_EMPTY),
    (coord.EmptyRoleName("role name must not be empty"), errors.ROLE_EMPTY),
]
PLAIN_WORDING = "refused"
"""A message with none of the words the gateway once matched (compact, future, lease,
exists, does not exist, ignore_value, stopping, stopped, user, role, permission, admin,
must not be empty)."""


@pytest.mark.parametrize(("error", "expected"), LOGGED, ids=[type(e).__name__ for e, _ in LOGGED])
def test_a_refusal_that_crossed_the_log_is_worded_by_its_cause_not_its_message(
    error: coord.CoordError, expected: errors.EtcdError
) -> None:
    logged = command_pb2.CommandError.FromString(error.to_proto().SerializeToString())
    assert logged.cause == type(error).__name__
    logged.message = PLAIN_WORDING
    back = coord.from_proto(logged)
    assert type(back) is type(error)
    assert errors.translate(back) is expected


OLD_WORDING = [  # as logged before CommandError had a cause: the code's generic status
    (coord.Code.OUT_OF_RANGE, "revision 3 has been compacted; the compact revision is 9"),
    (coord.Code.NOT_FOUND, "lease 7 not found"),
    (coord.Code.UNAVAILABLE, "the node is stopping"),
    (coord.Code.FAILED_PRECONDITION, "user 'u' already exists"),
]


@pytest.mark.parametrize(("code", "message"), OLD_WORDING, ids=[m for _, m in OLD_WORDING])
def test_a_refusal_logged_without_a_cause_is_not_guessed_from_its_wording(code: coord.Code, message: str) -> None:
    back = coord.from_proto(command_pb2.CommandError(code=int(code), message=message))
    got = errors.translate(back)
    assert got not in [expected for _, expected in LOGGED]
    assert got.code is grpc.StatusCode[code.name]


def test_what_etcd_has_no_wording_for_keeps_coords_code_and_message() -> None:
    got = errors.translate(coord.FailedPrecondition("cannot remove the last voter"))
    assert (got.code, got.message) == (grpc.StatusCode.FAILED_PRECONDITION, "cannot remove the last voter")


class _Outer:
    """The outer etcd call's context, as far as an inner call reads it."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return 5.0


def test_an_inner_call_hands_the_servicers_error_class_to_the_translation() -> None:
    """The servicer answers through ``unary`` (a gRPC status: code and message); the
    gateway still sees the class, so the member's own wording does not matter."""

    class Servicer:
        @unary
        async def MemberRemove(self, request: Any, context: Any) -> Any:
            raise coord.MemberNotFound("no such one")

    calls = CoordCalls(None)
    calls.register("/coord.v1.Cluster/MemberRemove", Servicer().MemberRemove)
    with pytest.raises(errors.EtcdError) as refused:
        asyncio.run(calls.call("/coord.v1.Cluster/MemberRemove", object(), _Outer()))
    assert refused.value is errors.MEMBER_NOT_FOUND

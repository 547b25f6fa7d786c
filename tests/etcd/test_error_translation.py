"""How the etcd gateway words coord's errors (coord_server/etcd/errors.py): by the
error's class where coord names the cause, by its code otherwise, and by the wording
only for a refusal that crossed the log as a CommandError (a code and a message). No
server: the translation and the in-process call path alone."""

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


LOGGED = [  # the state machine's wording (coord_server/state) and the node's
    (coord.Code.OUT_OF_RANGE, "revision 3 has been compacted; the compact revision is 9", errors.COMPACTED),
    (coord.Code.OUT_OF_RANGE, "revision 12 is in the future; the current revision is 9", errors.FUTURE_REV),
    (coord.Code.NOT_FOUND, "lease 7 not found", errors.LEASE_NOT_FOUND),
    (coord.Code.FAILED_PRECONDITION, "lease 7 already exists", errors.LEASE_EXIST),
    (coord.Code.INVALID_ARGUMENT, "ignore_value is set but key b'k' does not exist", errors.KEY_NOT_FOUND),
    (coord.Code.UNAVAILABLE, "the node is stopping", errors.STOPPED),
]


@pytest.mark.parametrize(("code", "message", "expected"), LOGGED, ids=[e.message for _, _, e in LOGGED])
def test_a_refusal_that_crossed_the_log_is_worded_as_etcd_words_it(
    code: coord.Code, message: str, expected: errors.EtcdError
) -> None:
    back = coord.from_proto(command_pb2.CommandError(code=int(code), message=message))
    assert errors.translate(back) is expected


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

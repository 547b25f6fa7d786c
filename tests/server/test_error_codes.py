"""The one map between the state layer's status codes (``coord_server.state.Code``,
defined without gRPC) and ``grpc.StatusCode`` (``coord_server.errors.grpc_status``)."""

from __future__ import annotations

import grpc

from coord.raft.v1 import command_pb2
from coord_server.errors import grpc_status, wire_code
from coord_server.services.common import status_of
from coord_server.state import Code, Compacted, NotFound, from_proto


def test_every_grpc_status_has_a_code_of_the_same_name_and_number() -> None:
    assert {c.name: int(c) for c in Code} == {s.name: s.value[0] for s in grpc.StatusCode}
    for status in grpc.StatusCode:
        assert grpc_status(Code[status.name]) is status
        assert grpc_status(wire_code(status)) is status
        assert grpc_status(status) is status


def test_a_number_grpc_does_not_define_is_unknown() -> None:
    assert grpc_status(999) is grpc.StatusCode.UNKNOWN
    assert Code.of(999) is Code.UNKNOWN


def test_state_errors_leave_the_services_with_their_grpc_status() -> None:
    assert status_of(Compacted(3, 5))[0] is grpc.StatusCode.OUT_OF_RANGE
    assert status_of(NotFound("no such lease")) == (grpc.StatusCode.NOT_FOUND, "no such lease", "")
    back = from_proto(command_pb2.CommandError(code=wire_code(grpc.StatusCode.UNAVAILABLE), message="m"))
    assert status_of(back)[0] is grpc.StatusCode.UNAVAILABLE

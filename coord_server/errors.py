"""Errors of the node runtime, each mapped to the gRPC status a client can act on, and
the one map between the state layer's codes (``coord_server.state.errors.Code``, the wire
numbers a CommandError carries) and ``grpc.StatusCode``.

The services translate every error with ``status_of``; anything not listed here is a bug
and becomes INTERNAL (logged with its traceback).
"""

from __future__ import annotations

import grpc

from coord_server.state.errors import Code

_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {status.value[0]: status for status in grpc.StatusCode}


def grpc_status(code: Code | grpc.StatusCode | int) -> grpc.StatusCode:
    """The gRPC status of a state-layer Code or a wire number (UNKNOWN for a number gRPC
    does not define); a grpc.StatusCode is returned as it is."""
    if isinstance(code, grpc.StatusCode):
        return code
    return _STATUS_BY_NUMBER.get(int(code), grpc.StatusCode.UNKNOWN)


def wire_code(code: Code | grpc.StatusCode | int) -> int:
    """The wire number of a code, as a CommandError or a ForwardResponse carries it."""
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code)


class CoordError(Exception):
    """Base of the runtime's errors; ``code`` is the gRPC status to answer with."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(CoordError):
    """No leader now, or this node is stopping. Safe to retry (following ``leader_address``
    when it is known). Nothing was applied."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, leader_address: str = "") -> None:
        super().__init__(message)
        self.leader_address = leader_address


class InvalidArgument(CoordError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CoordError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(CoordError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CoordError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

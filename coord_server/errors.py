"""Errors of the node runtime, each mapped to the gRPC status a client can act on.

The services translate every error with ``status_of``; anything not listed here is a bug
and becomes INTERNAL (logged with its traceback).
"""

from __future__ import annotations

import grpc


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

"""The one map between coord's error codes (``coord_server.errors.Code``, defined without
gRPC) and ``grpc.StatusCode``: the services answer with it, the etcd gateway and the
admission checks too."""

from __future__ import annotations

import grpc

from coord_server.errors import Code

_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {status.value[0]: status for status in grpc.StatusCode}


def grpc_status(code: Code | int) -> grpc.StatusCode:
    """The gRPC status of a Code or a wire number (UNKNOWN for a number gRPC does not
    define)."""
    return _STATUS_BY_NUMBER.get(int(code), grpc.StatusCode.UNKNOWN)


def code_of(status: grpc.StatusCode) -> Code:
    """The Code of a gRPC status (a status a peer or a client call answered with)."""
    return Code.of(int(status.value[0]))

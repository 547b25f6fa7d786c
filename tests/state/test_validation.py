"""The pure edge checks of validation.py, and the small helpers services use."""

from __future__ import annotations

import pytest

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2
from coord_server.state import (
    Code,
    Compacted,
    InvalidArgument,
    NotFound,
    OutOfRange,
    CoordError,
    from_proto,
    prefix_end,
    validate_command,
    validate_compact,
    validate_delete_range,
    validate_lease_grant,
    validate_lease_revoke,
    validate_put,
    validate_range,
    validate_txn,
)

from .driver import put_op


def test_valid_requests_pass() -> None:
    validate_put(kv_pb2.PutRequest(key=b"k", value=b"v", lease=3))
    validate_range(kv_pb2.RangeRequest(key=b"\0", range_end=b"\0", limit=5, revision=-1))
    validate_delete_range(kv_pb2.DeleteRangeRequest(key=b"a", range_end=b"b"))
    validate_txn(kv_pb2.TxnRequest(success=[put_op(b"a")]))
    validate_compact(kv_pb2.CompactRequest(revision=1))
    validate_lease_grant(lease_pb2.LeaseGrantRequest(ttl=1))
    validate_lease_revoke(lease_pb2.LeaseRevokeRequest(id=1))
    validate_command(command_pb2.Command(client_id="c", seq=1, put=kv_pb2.PutRequest(key=b"a")))
    validate_command(command_pb2.Command(lease_expire=command_pb2.LeaseExpire(ids=[1])))


@pytest.mark.parametrize(
    "check, req, error",
    [
        (validate_put, kv_pb2.PutRequest(), InvalidArgument),
        (validate_range, kv_pb2.RangeRequest(key=b"a", range_end=b"b" * 4097), InvalidArgument),
        (validate_delete_range, kv_pb2.DeleteRangeRequest(key=b"x" * 4097), InvalidArgument),
        (validate_txn, kv_pb2.TxnRequest(success=[put_op(b"")]), InvalidArgument),
        (validate_compact, kv_pb2.CompactRequest(revision=0), OutOfRange),
        (validate_lease_grant, lease_pb2.LeaseGrantRequest(ttl=0), InvalidArgument),
        (validate_lease_revoke, lease_pb2.LeaseRevokeRequest(id=0), NotFound),
        (validate_command, command_pb2.Command(client_id="c"), InvalidArgument),
        (validate_command, command_pb2.Command(client_id="é" * 65, put=kv_pb2.PutRequest(key=b"a")),
         InvalidArgument),
        (validate_command, command_pb2.Command(put=kv_pb2.PutRequest()), InvalidArgument),
    ],
    ids=["put", "range", "delete", "txn", "compact", "grant", "revoke", "no op",
         "client id over 128 bytes", "command's op"],
)
def test_invalid_requests(check, req, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as info:
        check(req)
    assert isinstance(info.value, CoordError) and info.value.message


def test_errors_carry_status_codes() -> None:
    err = Compacted(3, 5)
    assert err.code == Code.OUT_OF_RANGE and "compacted" in err.message
    proto = err.to_proto()
    assert proto.code == 11
    back = from_proto(proto)
    assert isinstance(back, OutOfRange) and back.message == err.message
    odd = from_proto(command_pb2.CommandError(code=14, message="m"))
    assert odd.code == Code.UNAVAILABLE
    assert from_proto(command_pb2.CommandError(code=999)).code == Code.UNKNOWN


@pytest.mark.parametrize(
    "prefix, end",
    [(b"a", b"b"), (b"ab", b"ac"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0"), (b"a\x00", b"a\x01")],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end

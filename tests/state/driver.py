"""A small driver for StateMachine tests: builds Commands, applies them at the next index,
and unwraps results.

    d = Driver()
    d.put(b"a", b"1")                     # -> PutResponse (asserts no error)
    d.error(d.cmd(put=PutRequest(key=b"")))  # -> grpc.StatusCode of the CommandError
"""

from __future__ import annotations

from typing import Any

import grpc

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2
from coord_server.state import StateMachine

CODES = {status.value[0]: status for status in grpc.StatusCode}


class Driver:
    def __init__(self, sm: StateMachine | None = None) -> None:
        self.sm = sm if sm is not None else StateMachine()

    @property
    def index(self) -> int:
        return self.sm.applied_index

    def apply(self, command: command_pb2.Command) -> command_pb2.CommandResult:
        result = self.sm.apply(self.sm.applied_index + 1, command.SerializeToString())
        assert result is not None
        return result

    def cmd(self, client_id: str = "", seq: int = 0, **op: Any) -> command_pb2.CommandResult:
        return self.apply(command_pb2.Command(client_id=client_id, seq=seq, **op))

    @staticmethod
    def ok(result: command_pb2.CommandResult) -> Any:
        which = result.WhichOneof("result")
        assert which is not None and which != "error", f"expected success, got {result}"
        return getattr(result, which)

    @staticmethod
    def code(result: command_pb2.CommandResult) -> grpc.StatusCode:
        assert result.WhichOneof("result") == "error", f"expected an error, got {result}"
        return CODES[result.error.code]

    # KV
    def put(self, key: bytes, value: bytes = b"", **kw: Any) -> kv_pb2.PutResponse:
        return self.ok(self.cmd(put=kv_pb2.PutRequest(key=key, value=value, **kw)))

    def delete(self, key: bytes, range_end: bytes = b"", **kw: Any) -> kv_pb2.DeleteRangeResponse:
        return self.ok(self.cmd(delete_range=kv_pb2.DeleteRangeRequest(key=key, range_end=range_end, **kw)))

    def txn(self, compare: list[kv_pb2.Compare] = (), success: list[kv_pb2.RequestOp] = (),  # type: ignore[assignment]
            failure: list[kv_pb2.RequestOp] = ()) -> command_pb2.CommandResult:  # type: ignore[assignment]
        return self.cmd(txn=kv_pb2.TxnRequest(compare=compare, success=success, failure=failure))

    def compact(self, revision: int) -> command_pb2.CommandResult:
        return self.cmd(compact=kv_pb2.CompactRequest(revision=revision))

    def get(self, key: bytes, range_end: bytes = b"", **kw: Any) -> kv_pb2.RangeResponse:
        return self.sm.range(kv_pb2.RangeRequest(key=key, range_end=range_end, **kw))

    def value(self, key: bytes, revision: int = 0) -> bytes | None:
        resp = self.get(key, revision=revision)
        return resp.kvs[0].value if resp.kvs else None

    # leases
    def grant(self, ttl: int = 10, lease_id: int = 0) -> lease_pb2.LeaseGrantResponse:
        return self.ok(self.cmd(lease_grant=lease_pb2.LeaseGrantRequest(ttl=ttl, id=lease_id)))

    def revoke(self, lease_id: int) -> command_pb2.CommandResult:
        return self.cmd(lease_revoke=lease_pb2.LeaseRevokeRequest(id=lease_id))

    def expire(self, *ids: int) -> command_pb2.CommandResult:
        return self.cmd(lease_expire=command_pb2.LeaseExpire(ids=ids))


# Builders for Txn parts.

def put_op(key: bytes, value: bytes = b"", **kw: Any) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value, **kw))


def del_op(key: bytes, range_end: bytes = b"", **kw: Any) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=key, range_end=range_end, **kw))


def range_op(key: bytes, range_end: bytes = b"", **kw: Any) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key, range_end=range_end, **kw))


def txn_op(compare: list[kv_pb2.Compare] = (), success: list[kv_pb2.RequestOp] = (),  # type: ignore[assignment]
           failure: list[kv_pb2.RequestOp] = ()) -> kv_pb2.RequestOp:  # type: ignore[assignment]
    return kv_pb2.RequestOp(request_txn=kv_pb2.TxnRequest(compare=compare, success=success, failure=failure))


def cmp(target: str, result: str, key: bytes = b"", **value: Any) -> kv_pb2.Compare:
    """cmp("VERSION", "EQUAL", b"k", version=1)"""
    return kv_pb2.Compare(
        target=getattr(kv_pb2, "COMPARE_TARGET_" + target),
        result=getattr(kv_pb2, "COMPARE_RESULT_" + result),
        key=key,
        **value,
    )

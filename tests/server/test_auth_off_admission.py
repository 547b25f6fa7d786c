"""With auth off, a unary call that grows the store (KV.Put, Txn, Lock.Acquire...) is
admitted by the quota check alone, in one wrapper (coord_server/auth/auth_off.py): no
Admission per call, no question to gRPC about the caller. Undecodable requests and a
full quota are still refused with their status; Lease.Grant keeps its per-client
check; with auth on (or before the member caught up) the full admission runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from coord.v1 import kv_pb2, lease_pb2
from coord_server.auth.interceptor import AdmissionInterceptor
from coord_server.auth.quota import LeaseLimit, Quota
from coord_server.auth.runtime import RuntimeAuth


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class NoPeerContext:
    """A call's context whose caller nobody on the auth-off path needs to know."""

    def peer(self) -> str:
        raise AssertionError("the auth-off path asked for the caller's address")

    def invocation_metadata(self) -> tuple[Any, ...]:
        return ()

    def time_remaining(self) -> float:
        return 5.0

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        raise Aborted(code, details)


def _node(size_bytes: int = 0) -> Any:
    auth = SimpleNamespace(initialised=False, enabled=False)
    state = SimpleNamespace(auth=auth, size_bytes=size_bytes)
    return SimpleNamespace(state=state, commit_index=0)


def _interceptor(node: Any, quota_bytes: int = 0, caught_up: bool = True) -> AdmissionInterceptor:
    runtime = RuntimeAuth(node, None)
    runtime.caught_up = caught_up
    return AdmissionInterceptor(runtime, Quota(node, quota_bytes), LeaseLimit(node, 0))


async def _handler(interceptor: AdmissionInterceptor, method: str, inner: Any, request_type: Any) -> Any:
    plain = grpc.unary_unary_rpc_method_handler(
        inner, request_deserializer=request_type.FromString, response_serializer=lambda m: m.SerializeToString()
    )

    async def continuation(details: Any) -> Any:
        return plain

    return await interceptor.intercept_service(continuation, SimpleNamespace(method=method, invocation_metadata=()))


async def _answer_put(request: Any, context: Any) -> kv_pb2.PutResponse:
    return kv_pb2.PutResponse(prev_kv=None)


async def test_auth_off_put_is_admitted_without_asking_for_the_caller() -> None:
    handler = await _handler(_interceptor(_node()), "/coord.v1.KV/Put", _answer_put, kv_pb2.PutRequest)
    request = handler.request_deserializer(kv_pb2.PutRequest(key=b"k", value=b"v").SerializeToString())
    response = await handler.unary_unary(request, NoPeerContext())
    assert isinstance(response, kv_pb2.PutResponse)


async def test_auth_off_put_over_the_quota_is_resource_exhausted() -> None:
    handler = await _handler(_interceptor(_node(size_bytes=2048), quota_bytes=1024), "/coord.v1.KV/Put",
                             _answer_put, kv_pb2.PutRequest)
    request = handler.request_deserializer(kv_pb2.PutRequest(key=b"k", value=b"v").SerializeToString())
    with pytest.raises(Aborted) as err:
        await handler.unary_unary(request, NoPeerContext())
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_auth_off_undecodable_put_is_invalid_argument_before_the_servicer() -> None:
    ran: list[Any] = []

    async def servicer(request: Any, context: Any) -> Any:
        ran.append(request)
        return kv_pb2.PutResponse()

    handler = await _handler(_interceptor(_node()), "/coord.v1.KV/Put", servicer, kv_pb2.PutRequest)
    request = handler.request_deserializer(b"\xff\xff\xff\xff garbage")
    with pytest.raises(Aborted) as err:
        await handler.unary_unary(request, NoPeerContext())
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ran == []


async def test_lease_grant_keeps_its_per_client_check_with_auth_off() -> None:
    async def grant(request: Any, context: Any) -> lease_pb2.LeaseGrantResponse:
        return lease_pb2.LeaseGrantResponse(id=7)

    handler = await _handler(_interceptor(_node()), "/coord.v1.Lease/Grant", grant, lease_pb2.LeaseGrantRequest)
    request = handler.request_deserializer(lease_pb2.LeaseGrantRequest(ttl=5).SerializeToString())
    with pytest.raises(AssertionError, match="caller's address"):
        await handler.unary_unary(request, NoPeerContext())


async def test_before_catching_up_the_full_admission_runs() -> None:
    node = _node()
    interceptor = _interceptor(node, caught_up=False)
    off = await _handler(_interceptor(node), "/coord.v1.KV/Put", _answer_put, kv_pb2.PutRequest)
    full = await _handler(interceptor, "/coord.v1.KV/Put", _answer_put, kv_pb2.PutRequest)
    assert full is not off
    assert full is interceptor._wrapped["/coord.v1.KV/Put"][0]

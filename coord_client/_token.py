"""Bearer-token metadata on every call and stream of a channel.

Why a channel interceptor: calls are made from many places (unary stubs, the KV
pipeline, watches, keepalives, lock and election waits); adding the metadata where the
channel is made covers them all, including ones added later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc.aio

TOKEN_ENV = "COORD_TOKEN"
AUTHORIZATION_METADATA_KEY = "authorization"


def _with_token(details: grpc.aio.ClientCallDetails, value: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(AUTHORIZATION_METADATA_KEY, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.value), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.value), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.value), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.value), request_iterator)


def bearer_interceptors(token: str) -> Sequence[grpc.aio.ClientInterceptor] | None:
    """The interceptors that send ``authorization: Bearer <token>``; None without a token
    (a channel without interceptors is a little cheaper per call)."""
    if not token:
        return None
    value = f"Bearer {token}"
    return [_UnaryUnary(value), _UnaryStream(value), _StreamUnary(value), _StreamStream(value)]

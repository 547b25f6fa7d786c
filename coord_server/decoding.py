"""Requests gRPC cannot decode are answered INVALID_ARGUMENT, on every method.

grpc's own handling of a message that fails to parse is an unhandled exception in the
server (UNKNOWN "Unexpected DecodeError" for unary requests, INTERNAL for streams),
logged as a server error. ``decoding_checked(handler)`` gives the handler a deserializer
that turns a parse failure into an ``Undecodable`` value instead, and a behaviour that
ends the call with INVALID_ARGUMENT when it meets one, before anything else (admission,
the servicer) sees the request. The admission interceptor applies it to every handler
(coord_server/auth/interceptor.py). Found by tests/security/test_fuzz.py.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from coord_server.errors import InvalidArgument


class Undecodable:
    """What the deserializer returns for bytes that do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def undecodable_message(value: Undecodable) -> str:
    return f"the request could not be decoded: {value.error}"


def safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning an ``Undecodable`` for bytes that do not parse."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as err:
            return Undecodable(err)

    return deserialize


class UndecodableRequest(InvalidArgument):
    """Raised into a servicer reading a stream when a message does not decode: servicers
    end their stream with a CoordError's status; one that lets it escape is answered
    INVALID_ARGUMENT by the wrapper. (Aborting from inside the iterator instead breaks
    servicers that read in a task of their own and abort themselves.)"""


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if type(request) is Undecodable:
            raise UndecodableRequest(undecodable_message(request))
        yield request


def decoding_checked(handler: Any) -> Any:
    """``handler`` answering undecodable requests with INVALID_ARGUMENT (module docstring)."""
    for shape, factory in (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        inner = getattr(handler, shape)
        if inner is None:
            continue
        streaming_request = shape.startswith("stream")
        return factory(
            _behaviour(inner, streaming_request),
            request_deserializer=safe_deserializer(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


def _behaviour(inner: Any, streaming_request: bool) -> Any:
    if streaming_request:
        if inspect.isasyncgenfunction(inner):

            async def stream_generator(requests: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    async for response in inner(_checked_stream(requests), context):
                        yield response
                except UndecodableRequest as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

            return stream_generator

        async def stream_behaviour(requests: Any, context: Any) -> Any:
            try:
                return await inner(_checked_stream(requests), context)
            except UndecodableRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        return stream_behaviour
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            if type(request) is Undecodable:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable_message(request))
            async for response in inner(request, context):
                yield response

        return generator

    async def behaviour(request: Any, context: Any) -> Any:
        if type(request) is Undecodable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable_message(request))
        result = inner(request, context)
        return await result if inspect.isawaitable(result) else result

    return behaviour

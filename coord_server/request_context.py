"""What the server knows about the call it is serving, for logs and metrics.

``RequestInterceptor`` (a grpc.aio server interceptor) wraps every method handler once
(cached per method) so that each call

- sets ``current_call`` to the call's details for as long as the handler runs; the JSON
  log formatter reads the method and the request id (``coord-client-id``/``coord-seq``
  metadata) from it only when a line is actually logged, so a call that logs nothing
  pays one context-variable set and reset;
- counts once in ``coord_grpc_requests_total{method, code}`` when it ends (streams
  included, when the stream ends), if metrics are on;
- logs at debug level a call that ended with an error status, with its request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from coord_server.errors import Code

current_call: contextvars.ContextVar[grpc.HandlerCallDetails | None] = contextvars.ContextVar(
    "coord_current_call", default=None
)

current_user: contextvars.ContextVar[str] = contextvars.ContextVar("coord_current_user", default="")
"""The authenticated user of the call being served (set by the auth interceptor); "" when
auth is off. Proposals carry it as Command.user, so the state machine can check them again."""

recheck_after_read: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "coord_recheck_after_read", default=None
)
"""Set by the auth interceptor for a unary call it admitted: checks the call again once a
read barrier passed (services.common.read_barrier), against the auth state as of the read
point."""

log = logging.getLogger("coord.requests")

CLIENT_ID_KEY = "coord-client-id"
SEQ_KEY = "coord-seq"


def request_fields() -> dict[str, str]:
    """``method`` and, when the client sent them, ``request_id`` ("<client id>/<seq>")
    of the call being served in this context; {} outside a call."""
    details = current_call.get()
    if details is None:
        return {}
    fields = {"method": details.method}
    client_id = seq = ""
    for key, value in details.invocation_metadata or ():
        if key == CLIENT_ID_KEY:
            client_id = value if isinstance(value, str) else value.decode(errors="replace")
        elif key == SEQ_KEY:
            seq = value if isinstance(value, str) else value.decode(errors="replace")
    if client_id:
        fields["request_id"] = f"{client_id}/{seq}" if seq else client_id
    return fields


def _code_name(context: Any, default: str) -> str:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return Code.of(int(code)).name


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class _Ended:
    """What happens when a call of one method ends: count it (with a per-code cache of
    the counter's children) and log an error status at debug level."""

    def __init__(self, counter: Any, method: str) -> None:
        self.counter = counter
        self.method = method
        self.children: dict[str, Any] = {}

    def __call__(self, code: str, context: Any) -> None:
        if self.counter is not None:
            child = self.children.get(code)
            if child is None:
                child = self.children[code] = self.counter.labels(self.method, code)
            child.inc()
        if code != "OK" and log.isEnabledFor(logging.DEBUG):
            log.debug("%s ended with %s: %s", self.method, code, context.details() or "")


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Sets ``current_call`` and counts each call by method and status code.

    ``requests`` is the ``coord_grpc_requests`` Counter (labels method, code), or None
    to only set the context (metrics off, JSON logs on)."""

    def __init__(self, requests: Any = None) -> None:
        self.requests = requests
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            wrapped = cached[1]
        else:
            wrapped = self._wrap(handler, method)
            self._wrapped[method] = (handler, wrapped)
        # The wrapped behaviour cannot see the details, so they travel in a context
        # variable set here: the handler runs in a copy of this task's context.
        current_call.set(handler_call_details)
        return wrapped

    def _wrap(self, original: Handler, method: str) -> Handler:
        ended = _Ended(self.requests, method)
        handler: Any = original  # grpc's stubs type behaviours as synchronous; ours are async
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_call(handler.unary_unary, ended), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_call(handler.stream_unary, ended), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            behaviour = handler.unary_stream
            wrap = _wrap_stream if inspect.isasyncgenfunction(behaviour) else _wrap_call
            return grpc.unary_stream_rpc_method_handler(
                wrap(behaviour, ended), handler.request_deserializer, handler.response_serializer
            )
        behaviour = handler.stream_stream
        wrap = _wrap_stream if inspect.isasyncgenfunction(behaviour) else _wrap_call
        return grpc.stream_stream_rpc_method_handler(
            wrap(behaviour, ended), handler.request_deserializer, handler.response_serializer
        )


def _wrap_call(behaviour: Callable[..., Awaitable[Any]], ended: _Ended) -> Callable[..., Awaitable[Any]]:
    """A handler that returns (unary response) or writes with ``context.write``."""
    async def call(request: Any, context: Any) -> Any:
        try:
            response = await behaviour(request, context)
        except asyncio.CancelledError:
            ended("CANCELLED", context)
            raise
        except BaseException:
            ended(_code_name(context, "UNKNOWN"), context)
            raise
        ended(_code_name(context, "OK"), context)
        return response

    return call


def _wrap_stream(behaviour: Callable[..., AsyncIterator[Any]], ended: _Ended) -> Callable[..., AsyncIterator[Any]]:
    """A handler that is an async generator of responses."""
    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for response in behaviour(request, context):
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            ended("CANCELLED", context)
            raise
        except BaseException:
            ended(_code_name(context, "UNKNOWN"), context)
            raise
        ended(_code_name(context, "OK"), context)

    return stream

"""In-process calls of coord's own servicers, admitted as if they came over gRPC.

The etcd API is a translation: each etcd call becomes the coord.v1 call with the same
meaning, run through the member's AdmissionInterceptor exactly as a coord.v1 call would
be (token, permissions, quota, lease limits), then through coord's servicer. Nothing is
decided twice, so the two APIs cannot drift apart.

``CallContext`` stands in for the servicer context of that inner call: it passes deadline
and metadata through (etcd's ``token`` metadata becomes coord's bearer token), and turns
the inner servicer's abort into a ``CoordAbort`` carrying the error the servicer answered
with (its class names the cause), which the etcd side translates.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from coord_server.auth.rules import Access, access_of
from coord_server.errors import CoordError, error_of
from coord_server.services.common import status_of
from coord_server.status import code_of, grpc_status

from .errors import EtcdError, translate

UnaryCall = Callable[[Any, Any], Awaitable[Any]]

ETCD_TOKEN_METADATA_KEY = "token"
"""Where etcd clients send the token Authenticate gave them."""


class CoordAbort(Exception):
    """The inner coord call ended with ``error``."""

    def __init__(self, error: CoordError) -> None:
        super().__init__(error.message)
        self.error = error


def as_coord_error(exc: BaseException) -> CoordError:
    """``exc`` as the CoordError a coord servicer would answer with (a bug: INTERNAL)."""
    if isinstance(exc, CoordError):
        return exc
    code, message, _ = status_of(exc)
    return error_of(code_of(code), message)


def etcd_metadata(metadata: Any) -> tuple[tuple[str, str], ...]:
    """The call's metadata with an etcd token (``token: T``, or ``authorization: T``
    without a scheme, as etcd's gateway sends it) as coord's ``authorization: Bearer T``."""
    out: list[tuple[str, str]] = []
    token = ""
    for key, value in metadata or ():
        text = value.decode() if isinstance(value, bytes) else str(value)
        if key == ETCD_TOKEN_METADATA_KEY:
            token = text.strip()
            continue
        if key == "authorization" and " " not in text.strip():
            token = text.strip()
            continue
        out.append((key, text))
    if token:
        out.append(("authorization", f"Bearer {token}"))
    return tuple(out)


class CallContext:
    """The servicer context an inner coord call sees (see the module docstring)."""

    __slots__ = ("outer", "_metadata")

    def __init__(self, outer: Any) -> None:
        self.outer = outer
        self._metadata: tuple[tuple[str, str], ...] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        if self._metadata is None:
            self._metadata = etcd_metadata(self.outer.invocation_metadata())
        return self._metadata

    def time_remaining(self) -> float | None:
        return self.outer.time_remaining()  # type: ignore[no-any-return]

    def peer(self) -> str:
        return self.outer.peer()  # type: ignore[no-any-return]

    def auth_context(self) -> Any:
        return self.outer.auth_context()

    def done(self) -> bool:
        return self.outer.done()  # type: ignore[no-any-return]

    def cancelled(self) -> bool:
        return self.outer.cancelled()  # type: ignore[no-any-return]

    async def write(self, message: Any) -> None:
        await self.outer.write(message)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        # Servicers abort while handling the error they answer with (services/common.py
        # ``unary``): keep it when it is that status, for its class.
        handled = sys.exc_info()[1]
        if isinstance(handled, CoordError) and grpc_status(handled.code) is code and handled.message == details:
            raise CoordAbort(handled)
        raise CoordAbort(error_of(code_of(code), details))

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def set_code(self, code: Any) -> None:
        pass

    def set_details(self, details: Any) -> None:
        pass


class CoordCalls:
    """coord.v1 unary methods by full name, each wrapped by the admission interceptor
    (when there is one) so an inner call is checked as a gRPC call would be."""

    def __init__(self, interceptor: Any) -> None:
        self.interceptor = interceptor
        self._calls: dict[str, UnaryCall] = {}

    def register(self, method: str, fn: UnaryCall) -> None:
        if self.interceptor is not None and access_of(method) is not Access.OPEN:
            handler: Any = grpc.unary_unary_rpc_method_handler(fn)
            fn = self.interceptor.wrap_handler(method, handler).unary_unary
        self._calls[method] = fn

    async def call(self, method: str, request: Any, context: Any) -> Any:
        """Run ``method`` with ``request``; its error raised as etcd's EtcdError."""
        try:
            return await self._calls[method](request, CallContext(context))
        except CoordAbort as err:
            raise translate(err.error, method) from None

    def precheck(self, method: str, request: Any, context: Any) -> None:
        """With auth on, ``request``'s permission check as ``method`` (a coord.v1 method,
        or an etcd one, which only an admin may call) before etcd's own checks of the
        request: a caller without the right learns nothing about its request."""
        admission = self.admission(context)
        if admission is None:
            return
        try:
            admission.check(method, request)
        except Exception as exc:  # noqa: BLE001 - PermissionDenied, in etcd's terms
            raise translate(as_coord_error(exc)) from None

    def admission(self, context: Any) -> Any:
        """Admit a call that has no coord equivalent (who is calling); None without auth."""
        if self.interceptor is None or not self.interceptor.auth.enabled:
            return None
        try:
            return self.interceptor.admit_now(CallContext(context))
        except Exception as exc:  # noqa: BLE001 - Unauthenticated, translated
            raise translate(as_coord_error(exc)) from None


async def abort_etcd(context: Any, exc: BaseException) -> None:
    """End the outer etcd call with ``exc`` in etcd's terms."""
    if isinstance(exc, EtcdError):
        await context.abort(exc.code, exc.message)
    err = translate(exc.error if isinstance(exc, CoordAbort) else as_coord_error(exc))
    await context.abort(err.code, err.message)

"""The server interceptor that admits every call, by the access rule of its service.

Why an interceptor: one place sees every RPC, including ones added later, instead of a
check in each of forty handlers. The rule of each service (coord_server/auth/rules.py):
OPEN (health, reflection) passes untouched; PEER (coord.raft.v1) goes through the peer
guard (peer secret, peer certificate names: transport/peer_auth.py); PUBLIC (coord.v1)
is admitted as below (an RPC the requirements table does not know needs an admin role);
a service without a rule is refused while auth is on.

Per call: the bearer token (metadata ``authorization: Bearer <token>``) is checked when
auth is on (UNAUTHENTICATED if missing or unknown), then the request's Needs and the
quota (PERMISSION_DENIED, RESOURCE_EXHAUSTED) before the servicer runs, so a refused
request changes nothing. Streams are checked per message: every WatchRequest as it
arrives (a forbidden watch ends the stream with PERMISSION_DENIED, the client opens
one stream per watch), and each Pipeline op inside PipelineSession (its own result).
Forwarding happens after this, so a follower checks before it forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from coord_server.decoding import decoding_checked
from coord_server.errors import CoordError, PermissionDenied, Unauthenticated, error_of
from coord_server.request_context import current_user, recheck_after_read
from coord_server.services.common import abort, read_barrier

from .admission import CURRENT, Admission
from .auth_off import quota_only
from .lease_owner import check_lease_owner
from .quota import GRANT_SLOT, QUOTA_CHECKED_METHODS, GrantSlot, LeaseLimit, Quota
from .requirements import LEASE_REVOKE, LEASE_TIME_TO_LIVE
from .rules import Access, access_of, service_of
from .runtime import RuntimeAuth

AUTHORIZATION_METADATA_KEY = "authorization"
LEASE_GRANT = "/coord.v1.Lease/Grant"
PIPELINE = "/coord.v1.KV/Pipeline"
LEASE_KEEP_ALIVE = "/coord.v1.Lease/KeepAlive"
AUTHENTICATE = "/coord.v1.Auth/Authenticate"
"""Needs no token: it is how a user gets one (its password is its credential)."""

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, auth: RuntimeAuth, quota: Quota, leases: LeaseLimit, peer_guard: Any = None) -> None:
        self.auth = auth
        self.quota = quota
        self.leases = leases
        self.peer_guard = peer_guard
        """PeerGuard of this port's peer calls; None: peer calls pass (auth off, no secret)."""
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}
        """Per method: (its checked handler, the one to use while auth is off)."""
        self.translated_admit: Callable[[Any], Any] | None = None
        """For TRANSLATED services (rules.py): authenticates a call's caller or raises;
        installed by the package that serves them (coord_server/etcd)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        method = details.method
        if handler is None:
            return handler
        entry = self._wrapped.get(method)
        if entry is None:
            # Outermost: an undecodable request is INVALID_ARGUMENT before anything looks at it.
            checked = decoding_checked(self._by_rule(method, handler))
            access = access_of(method)
            unchecked = access is None or access is Access.TRANSLATED or (
                access is Access.PUBLIC and method not in QUOTA_CHECKED_METHODS
            )
            if unchecked:
                while_off = decoding_checked(handler)
            elif access is Access.PUBLIC and handler.unary_unary is not None and method != LEASE_GRANT:
                while_off = quota_only(method, handler, self.quota)  # auth_off.py
            else:
                while_off = checked
            entry = self._wrapped[method] = (checked, while_off)
        checked, while_auth_off = entry
        # Auth is switched at run time (Auth.Enable/Disable), so the choice is made per call:
        # with auth off, a call with nothing to check is spared the wrapper (~50 us of CPU).
        return while_auth_off if while_auth_off is not checked and not self.auth.enabled else checked

    def _by_rule(self, method: str, handler: Handler) -> Handler:
        access = access_of(method)
        if access is Access.PUBLIC:
            return self._wrap(method, handler)
        if access is Access.OPEN:
            return handler
        if access is Access.PEER:
            return handler if self.peer_guard is None else self.peer_guard.wrap(handler)
        if access is Access.TRANSLATED:
            if self.translated_admit is None:
                return _refusing(handler, f"{service_of(method)} is not admitted on this member")
            return _admitted_first(handler, self.translated_admit, self._catch_up)
        return _refusing(  # while auth is on (intercept_service serves it plain while auth is off)
            handler,
            f"{service_of(method)} has no access rule on this member (coord_server/auth/rules.py); "
            "it is refused while authentication is on",
        )

    # ------------------------------------------------------------------ admission

    async def admit(self, context: Any) -> Admission:
        """Who is calling (UNAUTHENTICATED when auth is on and the token is missing or
        unknown); sets the call's CURRENT admission. Before the first call after the start
        this member catches up with its log; a token it does not know yet is looked up
        again after a ReadIndex round (issued through another member a moment ago)."""
        if not self.auth.caught_up:
            await self.auth.catch_up(context)  # once, after the start: not with a stale auth state
        if self.auth.enabled and self.auth.replicated:
            token = bearer_token(context.invocation_metadata())
            if token and self.auth.authenticate(token) is None:
                with contextlib.suppress(CoordError):  # no read point now: unknown, as far as known
                    await read_barrier(self.quota.node, context)
        return self.admit_now(context)

    async def _catch_up(self, context: Any) -> None:
        if not self.auth.caught_up:
            await self.auth.catch_up(context)

    def admit_now(self, context: Any) -> Admission:
        """``admit`` by what this member has applied now, without waiting (the etcd API's
        translated calls)."""
        if not self.auth.enabled:
            admission = Admission(None, context.peer(), self.quota, leases=self.leases)
        else:
            token = bearer_token(context.invocation_metadata())
            if not token:
                raise Unauthenticated(
                    "authentication is enabled on this cluster: send 'authorization: Bearer <token>' "
                    "metadata (coordctl --token or COORD_TOKEN, Client(token=...))"
                )
            principal = self.auth.authenticate(token)
            if principal is None:
                raise Unauthenticated("the bearer token is not valid for this cluster")
            admission = Admission(principal, f"user {principal.name!r}", self.quota, token, self.auth, self.leases)
            current_user.set(principal.name)  # proposals carry it (Command.user), checked again at apply
        CURRENT.set(admission)
        return admission

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        """``handler`` for the coord.v1 ``method`` with this interceptor's checks, for a
        caller that runs coord's servicers in-process (the etcd API, coord_server/etcd)."""
        return self._wrap(method, handler)

    def _wrap(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream_stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    # ------------------------------------------------------------------ by call shape

    def _unary_unary(self, method: str, inner: Any) -> Any:
        is_grant = method == LEASE_GRANT
        is_revoke = method == LEASE_REVOKE
        is_time_to_live = method == LEASE_TIME_TO_LIVE

        async def behaviour(request: Any, context: Any) -> Any:
            try:
                admission = await self.admit(context)
                if admission.principal is not None and (is_revoke or is_time_to_live):
                    # What the lease is bound to and whose it is decide, so read it as of
                    # now, not as of this member's possibly lagging state (ReadIndex).
                    await read_barrier(self.quota.node, context)
                    await check_lease_owner(admission, self.quota.node, request.id, context)
                admission.check(method, request)
                if admission.principal is not None:
                    recheck_after_read.set(functools.partial(admission.recheck, method, request))
                if is_grant:
                    await self.leases.check(admission.client, context)
            except CoordError as exc:
                await abort(context, exc)
            if not is_grant or self.leases.limit <= 0:
                return await inner(request, context)
            # The servicer ends the slot with its proposal's outcome (quota.py
            # LeaseLimit.follow); a grant refused before it proposes frees it here.
            slot = GrantSlot(self.leases, admission.client)
            token = GRANT_SLOT.set(slot)
            try:
                return await inner(request, context)
            finally:
                GRANT_SLOT.reset(token)
                slot.release()

        return behaviour

    def _unary_stream(self, method: str, inner: Any) -> Any:
        if inspect.isasyncgenfunction(inner):

            async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    (await self.admit(context)).check(method, request)
                except CoordError as exc:
                    await abort(context, exc)
                async for response in inner(request, context):
                    yield response

            return generator

        async def behaviour(request: Any, context: Any) -> Any:
            try:
                (await self.admit(context)).check(method, request)
            except CoordError as exc:
                await abort(context, exc)
            return await inner(request, context)

        return behaviour

    def _stream_unary(self, method: str, inner: Any) -> Any:
        async def behaviour(requests: AsyncIterator[Any], context: Any) -> Any:
            try:
                admission = await self.admit(context)
            except CoordError as exc:
                await _refuse_stream(requests, context, exc)
            return await inner(_checked(method, admission, requests), context)

        return behaviour

    def _stream_stream(self, method: str, inner: Any) -> Any:
        # Pipeline's checks are per op, inside PipelineSession (check_pipeline_op): its
        # messages need no wrapper (the main write path; a generator hop per message).
        wrap = _checked if method != PIPELINE else _unchecked
        if method == LEASE_KEEP_ALIVE:
            wrap = self._owned_leases
        if inspect.isasyncgenfunction(inner):

            async def generator(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                try:
                    admission = await self.admit(context)
                except CoordError as exc:
                    await _refuse_stream(requests, context, exc)
                async for response in inner(wrap(method, admission, requests), context):
                    yield response

            return generator

        async def behaviour(requests: AsyncIterator[Any], context: Any) -> Any:
            try:
                admission = await self.admit(context)
            except CoordError as exc:
                await _refuse_stream(requests, context, exc)
            return await inner(wrap(method, admission, requests), context)

        return behaviour


    async def _owned_leases(self, method: str, admission: Admission, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """KeepAlive's requests, each checked, then refused unless the caller owns the lease."""
        async for request in _checked(method, admission, requests):
            for lease_id in request.ids or (request.id,):  # a request renews one lease or many
                await check_lease_owner(admission, self.quota.node, lease_id)
            yield request


FIRST_MESSAGE_WAIT = 1.0
"""How long a refused stream waits for the client's first message before ending."""


async def _refuse_stream(requests: AsyncIterator[Any], context: Any, exc: CoordError) -> None:
    """End a client-streaming call with ``exc``'s status, after its first message (or a
    second). Ending it before the client has sent anything races with that first write:
    grpc's client then reports INTERNAL ("Internal error from Core") in about one case
    in seven, instead of the status sent."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FIRST_MESSAGE_WAIT):
            await anext(aiter(requests), None)
    await abort(context, exc)


async def _checked(method: str, admission: Admission, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``requests``, each checked as it arrives; a refused one raises PermissionDenied
    (or ResourceExhausted) into the servicer, which ends the stream with that status."""
    async for request in requests:
        admission.check(method, request)
        admission.recheck(method, request)  # the roles as of now: a stream outlives auth changes
        yield request


def _admitted_first(handler: Handler, admit: Callable[[Any], Any], catch_up: Callable[[Any], Awaitable[None]]) -> Handler:
    """A handler of ``handler``'s shape that runs it once ``admit(context)`` accepted the
    caller; an error of ``admit`` (a code and a message) ends the call, running nothing."""

    async def refused(request: Any, context: Any, streaming_in: bool) -> bool:
        try:
            await catch_up(context)  # a restarted member first applies its log, as admit() does
            admit(context)
            return False
        except Exception as exc:  # noqa: BLE001 - its code and message are the answer
            # Its code and message only (no coord-leader hint: nothing ran).
            error = error_of(exc.code, exc.message) if isinstance(exc, CoordError) else Unauthenticated(str(exc))
            if streaming_in:
                await _refuse_stream(request, context, error)
            await abort(context, error)
            return True

    inners = (handler.unary_unary, handler.unary_stream, handler.stream_unary, handler.stream_stream)
    inner: Callable[..., Any] = next(i for i in inners if i is not None)
    streaming_in = handler.stream_unary is not None or handler.stream_stream is not None
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            if not await refused(request, context, streaming_in):
                async for response in inner(request, context):
                    yield response

        behaviour: Any = generator
    else:

        async def coroutine(request: Any, context: Any) -> Any:
            if not await refused(request, context, streaming_in):
                return await inner(request, context)
            return None

        behaviour = coroutine
    factory = (
        grpc.unary_unary_rpc_method_handler if handler.unary_unary is not None
        else grpc.unary_stream_rpc_method_handler if handler.unary_stream is not None
        else grpc.stream_unary_rpc_method_handler if handler.stream_unary is not None
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(behaviour, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


def _refusing(handler: Handler, message: str) -> Handler:
    """A handler of ``handler``'s shape that answers PERMISSION_DENIED and runs nothing."""

    async def refuse(request: Any, context: Any) -> Any:
        if handler.stream_unary is not None or handler.stream_stream is not None:
            await _refuse_stream(request, context, PermissionDenied(message))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def refuse_stream(request: Any, context: Any) -> AsyncIterator[Any]:
        await refuse(request, context)
        yield  # never reached: refuse aborts

    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, refuse),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, refuse_stream),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, refuse),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, refuse_stream),
    )
    for inner, factory, behaviour in kinds:
        if inner is not None:
            return factory(
                behaviour, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _unchecked(method: str, admission: Admission, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    return requests


def bearer_token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_METADATA_KEY:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""

"""What a unary call that grows the store needs while auth is off, in one coroutine.

Why: with auth off, admitting a KV.Put, a Txn or a Lock.Acquire checks nothing about the
caller; only the quota (``Quota.check_method``) and the decoding check apply. The full
path (decoding wrapper, then ``AdmissionInterceptor._unary_unary``, then ``admit``) built
an ``Admission`` per call, asked gRPC for the peer's address and set a context variable
nobody reads for unary calls with auth off: three coroutine layers and a few allocations
on every plain unary write, the path every client in another language takes.

Rule 1: the interceptor chooses this handler per call, only while ``RuntimeAuth.enabled``
        is false (which it never is before the member caught up with its log), exactly
        as it chooses the undecorated handler for calls with nothing to check.
Rule 2: an undecodable request is INVALID_ARGUMENT before anything else (decoding.py);
        a quota refusal is answered by its status; then the servicer runs.
Rule 3: only unary-request, unary-response methods, and not Lease.Grant (its per-client
        lease limit needs the caller's address and runs whether auth is on or off).
"""

from __future__ import annotations

from typing import Any

import grpc

from coord_server.decoding import Undecodable, safe_deserializer, undecodable_message
from coord_server.errors import CoordError
from coord_server.services.common import abort

from .quota import Quota


def quota_only(method: str, handler: Any, quota: Quota) -> Any:
    """``handler`` (unary-unary) with the decoding check and ``quota``'s check only."""
    inner = handler.unary_unary
    check = quota.check_method

    async def behaviour(request: Any, context: Any) -> Any:
        if type(request) is Undecodable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable_message(request))
        try:
            check(method, request)
        except CoordError as exc:
            await abort(context, exc)
        return await inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=safe_deserializer(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )

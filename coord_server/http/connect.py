"""coord.v1 over HTTP in the Connect protocol: ``curl -H 'Content-Type: application/json'
-d '{"key": "Zm9v", "value": "YmFy"}' http://host:port/coord.v1.KV/Put``.

Every route is derived from the service descriptors of coord.v1 (no per-method code), and
every call goes to this member's own gRPC port over ``ctx.channel`` with the caller's
Authorization header, so validation, auth, quotas and leader forwarding are the gRPC ones.

Rule 1: unary RPCs are Connect unary calls: ``POST /coord.v1.<Service>/<Method>`` with a
        body of ``application/json`` (protobuf's canonical JSON mapping, read and written
        by google.protobuf.json_format: lowerCamelCase names, bytes as base64, 64-bit
        integers as strings) or ``application/proto`` (binary). The answer has the same
        content type.
Rule 2: a failed call answers with Connect's error JSON ``{"code": "not_found",
        "message": ...}`` and the HTTP status Connect assigns to that code; gRPC trailing
        metadata (``coord-leader``) comes back as ``trailer-`` headers.
Rule 3: streaming RPCs (Election.Observe, Ring.Watch, Maintenance.Snapshot, and KV.Watch)
        are Connect streaming calls: ``application/connect+json`` (or ``+proto``), request
        and responses in 5-byte envelopes, ending with an end-of-stream envelope that
        carries the error, if any. HTTP/1.1 cannot carry both directions at once, so a
        bidirectional RPC (KV.Watch) takes the request messages of the body, then streams
        its responses until the server ends the stream or the client disconnects (a watch
        created by the first message goes on, as after a gRPC half-close).
Rule 4: ``Connect-Timeout-Ms`` becomes the gRPC deadline.
Rule 5: a unary call with ``Coord-Member: <id>`` is answered by that member of the cluster
        rather than this one (coord_server/http/members.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format, message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from coord_server.http.listener import HttpContext
from coord_server.http.members import MemberChannels, UnknownMember

log = logging.getLogger("coord.http.connect")

JSON = "application/json"
PROTO = "application/proto"
STREAM_JSON = "application/connect+json"
STREAM_PROTO = "application/connect+proto"
END_STREAM = 0x02

HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
"""Connect's HTTP status for each code (connectrpc.com/docs/protocol, error codes)."""


def code_name(code: grpc.StatusCode) -> str:
    """Connect's name of a gRPC code: ``not_found``; ``canceled`` with one l."""
    return "canceled" if code == grpc.StatusCode.CANCELLED else code.name.lower()


def coord_services() -> list[ServiceDescriptor]:
    """Every coord.v1 service, from the generated modules."""
    from coord.v1 import cluster_pb2, election_pb2, kv_pb2, lease_pb2, lock_pb2, maintenance_pb2, ring_pb2

    modules = (kv_pb2, lease_pb2, lock_pb2, election_pb2, ring_pb2, cluster_pb2, maintenance_pb2)
    return [s for m in modules for s in m.DESCRIPTOR.services_by_name.values()]


@dataclass(frozen=True)
class Method:
    """One RPC as the HTTP surface sees it."""

    path: str
    """``/coord.v1.KV/Put``: the gRPC method path, which is also the Connect path."""
    request: type[message.Message]
    response: type[message.Message]
    client_streaming: bool
    server_streaming: bool

    @classmethod
    def of(cls, service: ServiceDescriptor, method: MethodDescriptor) -> Method:
        return cls(
            f"/{service.full_name}/{method.name}",
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
            method.client_streaming,
            method.server_streaming,
        )

    @property
    def unary(self) -> bool:
        return not self.client_streaming and not self.server_streaming


class ConnectError(Exception):
    """An error answered before or instead of calling the member."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_body(code: grpc.StatusCode, message: str) -> dict[str, Any]:
    return {"code": code_name(code), "message": message}


def error_response(code: grpc.StatusCode, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(code, message), status=HTTP_STATUS.get(code, 500), headers=headers)


def _decode(data: bytes, cls: type[message.Message], binary: bool) -> message.Message:
    msg = cls()
    try:
        if binary:
            msg.ParseFromString(data)
        else:
            json_format.Parse(data.decode("utf-8") if data.strip() else "{}", msg)
    except (json_format.ParseError, message.DecodeError, UnicodeDecodeError, ValueError) as err:
        raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot read {cls.DESCRIPTOR.full_name}: {err}") from None
    return msg


def _encode(msg: message.Message, binary: bool) -> bytes:
    if binary:
        return msg.SerializeToString()
    return json_format.MessageToJson(msg, indent=None).encode()


def _timeout(request: web.Request) -> float | None:
    raw = request.headers.get("Connect-Timeout-Ms")
    if not raw:
        return None
    try:
        ms = int(raw)
    except ValueError:
        raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, f"Connect-Timeout-Ms must be an integer, got {raw!r}") from None
    return max(ms, 1) / 1000


def _trailers(metadata: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metadata or ():
        if not key.endswith("-bin") and key not in ("content-type",):
            out[key] = value if isinstance(value, str) else value.decode(errors="replace")
    return out


def unary_handler(ctx: HttpContext, method: Method, members: MemberChannels) -> Callable[[web.Request], Any]:
    def stub(channel: grpc.aio.Channel) -> Any:
        return channel.unary_unary(
            method.path, request_serializer=method.request.SerializeToString,
            response_deserializer=method.response.FromString,
        )

    local = stub(ctx.channel)

    async def handle(request: web.Request) -> web.StreamResponse:
        binary = request.content_type == PROTO
        if request.content_type not in (JSON, PROTO):
            return web.Response(status=415, headers={"Accept-Post": f"{JSON}, {PROTO}"},
                                text=f"Content-Type must be {JSON} or {PROTO}")
        try:
            msg = _decode(await request.read(), method.request, binary)
            metadata, timeout = ctx.metadata(request), _timeout(request)
            call = local
            if target := request.headers.get("Coord-Member"):
                try:
                    call = stub(await members.channel(target, metadata))
                except UnknownMember as err:
                    raise ConnectError(grpc.StatusCode.NOT_FOUND, str(err)) from None
            rpc = call(msg, metadata=metadata, timeout=timeout)
            response = await rpc
            trailers = _trailers(await rpc.trailing_metadata())
        except ConnectError as err:
            return error_response(err.code, err.message)
        except grpc.aio.AioRpcError as err:
            headers = {f"trailer-{k}": v for k, v in _trailers(err.trailing_metadata()).items()}
            return error_response(err.code(), err.details() or "", headers)
        headers = {f"trailer-{k}": v for k, v in trailers.items()}
        return web.Response(body=_encode(response, binary), content_type=PROTO if binary else JSON, headers=headers)

    return handle


def _envelopes(data: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(data):
        if len(data) - at < 5:
            raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, "truncated Connect envelope")
        flags, size = struct.unpack(">BI", data[at:at + 5])
        if at + 5 + size > len(data):
            raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, "truncated Connect envelope")
        out.append((flags, data[at + 5:at + 5 + size]))
        at += 5 + size
    return out


def envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def streaming_handler(ctx: HttpContext, method: Method) -> Callable[[web.Request], Any]:
    ser, de = method.request.SerializeToString, method.response.FromString
    if method.client_streaming:
        bidi = ctx.channel.stream_stream(method.path, request_serializer=ser, response_deserializer=de)
    else:
        server = ctx.channel.unary_stream(method.path, request_serializer=ser, response_deserializer=de)

    async def handle(request: web.Request) -> web.StreamResponse:
        binary = request.content_type == STREAM_PROTO
        if request.content_type not in (STREAM_JSON, STREAM_PROTO):
            return web.Response(status=415, headers={"Accept-Post": f"{STREAM_JSON}, {STREAM_PROTO}"},
                                text=f"a streaming RPC takes {STREAM_JSON} or {STREAM_PROTO}")
        response = web.StreamResponse(status=200, headers={"Content-Type": STREAM_PROTO if binary else STREAM_JSON})
        end: dict[str, Any] = {}
        rpc: Any = None
        try:
            messages = [_decode(payload, method.request, binary)
                        for flags, payload in _envelopes(await request.read()) if not flags & END_STREAM]
            timeout = _timeout(request)
            if method.client_streaming:
                rpc = bidi(_requests(messages), metadata=ctx.metadata(request), timeout=timeout)
            else:
                if len(messages) != 1:
                    raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"{method.path} takes exactly one request message, got {len(messages)}")
                rpc = server(messages[0], metadata=ctx.metadata(request), timeout=timeout)
            await response.prepare(request)
            async for item in rpc:
                await response.write(envelope(0, _encode(item, binary)))
            trailers = _trailers(await rpc.trailing_metadata())
            if trailers:
                end["metadata"] = {k: [v] for k, v in trailers.items()}
        except ConnectError as err:
            end["error"] = error_body(err.code, err.message)
        except grpc.aio.AioRpcError as err:
            end["error"] = error_body(err.code(), err.details() or "")
            trailers = _trailers(err.trailing_metadata())
            if trailers:
                end["metadata"] = {k: [v] for k, v in trailers.items()}
        except (ConnectionResetError, asyncio.CancelledError):
            if rpc is not None:
                rpc.cancel()
            raise
        if not response.prepared:
            await response.prepare(request)
        try:
            await response.write(envelope(END_STREAM, json.dumps(end).encode()))
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response

    return handle


async def _requests(messages: list[message.Message]) -> AsyncIterator[message.Message]:
    """The body's messages, then a half-close (Rule 3)."""
    for msg in messages:
        yield msg


def add_routes(app: web.Application, ctx: HttpContext) -> None:
    """Register ``POST /coord.v1.<Service>/<Method>`` for every coord.v1 RPC."""
    members = MemberChannels(ctx)

    async def close_members(app: web.Application) -> None:
        await members.close()

    app.on_cleanup.append(close_members)
    for service in coord_services():
        for descriptor in service.methods:
            method = Method.of(service, descriptor)
            handler = unary_handler(ctx, method, members) if method.unary else streaming_handler(ctx, method)
            app.router.add_post(method.path, handler)

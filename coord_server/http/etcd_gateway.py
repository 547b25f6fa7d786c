"""etcd's HTTP/JSON gateway (``/v3/...``), as etcd's grpc-gateway serves it.

Every route calls the etcd gRPC API of this member over the loopback channel, as etcd's
own gateway does, so validation, auth and leader forwarding apply exactly as on gRPC.
JSON follows grpc-gateway's conventions as etcd configures them: proto field names,
bytes as base64, 64-bit integers as strings, enums by name, zero values left out; a
stream answers one ``{"result": ...}`` object per line; an error is
``{"error", "code", "message"}`` with the HTTP status grpc-gateway gives its gRPC code.
``/v3beta`` is accepted as an alias of ``/v3`` (etcd 3.4 serves both); ``/version`` and
``/health`` answer as etcd's do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.v3electionpb import v3election_pb2 as election
from coord.etcd.v3lockpb import v3lock_pb2 as lock
from coord_server.etcd.cluster import ETCD_VERSION

# path under /v3 -> (gRPC method, request type, response type)
UNARY: dict[str, tuple[str, type[Message], type[Message]]] = {
    "kv/range": ("/etcdserverpb.KV/Range", etcd.RangeRequest, etcd.RangeResponse),
    "kv/put": ("/etcdserverpb.KV/Put", etcd.PutRequest, etcd.PutResponse),
    "kv/deleterange": ("/etcdserverpb.KV/DeleteRange", etcd.DeleteRangeRequest, etcd.DeleteRangeResponse),
    "kv/txn": ("/etcdserverpb.KV/Txn", etcd.TxnRequest, etcd.TxnResponse),
    "kv/compaction": ("/etcdserverpb.KV/Compact", etcd.CompactionRequest, etcd.CompactionResponse),
    "lease/grant": ("/etcdserverpb.Lease/LeaseGrant", etcd.LeaseGrantRequest, etcd.LeaseGrantResponse),
    "lease/revoke": ("/etcdserverpb.Lease/LeaseRevoke", etcd.LeaseRevokeRequest, etcd.LeaseRevokeResponse),
    "kv/lease/revoke": ("/etcdserverpb.Lease/LeaseRevoke", etcd.LeaseRevokeRequest, etcd.LeaseRevokeResponse),
    "lease/timetolive": (
        "/etcdserverpb.Lease/LeaseTimeToLive", etcd.LeaseTimeToLiveRequest, etcd.LeaseTimeToLiveResponse,
    ),
    "kv/lease/timetolive": (
        "/etcdserverpb.Lease/LeaseTimeToLive", etcd.LeaseTimeToLiveRequest, etcd.LeaseTimeToLiveResponse,
    ),
    "lease/leases": ("/etcdserverpb.Lease/LeaseLeases", etcd.LeaseLeasesRequest, etcd.LeaseLeasesResponse),
    "kv/lease/leases": ("/etcdserverpb.Lease/LeaseLeases", etcd.LeaseLeasesRequest, etcd.LeaseLeasesResponse),
    "cluster/member/list": ("/etcdserverpb.Cluster/MemberList", etcd.MemberListRequest, etcd.MemberListResponse),
    "cluster/member/add": ("/etcdserverpb.Cluster/MemberAdd", etcd.MemberAddRequest, etcd.MemberAddResponse),
    "cluster/member/remove": ("/etcdserverpb.Cluster/MemberRemove", etcd.MemberRemoveRequest, etcd.MemberRemoveResponse),
    "cluster/member/promote": (
        "/etcdserverpb.Cluster/MemberPromote", etcd.MemberPromoteRequest, etcd.MemberPromoteResponse,
    ),
    "maintenance/status": ("/etcdserverpb.Maintenance/Status", etcd.StatusRequest, etcd.StatusResponse),
    "maintenance/alarm": ("/etcdserverpb.Maintenance/Alarm", etcd.AlarmRequest, etcd.AlarmResponse),
    "maintenance/defragment": ("/etcdserverpb.Maintenance/Defragment", etcd.DefragmentRequest, etcd.DefragmentResponse),
    "maintenance/hash": ("/etcdserverpb.Maintenance/Hash", etcd.HashRequest, etcd.HashResponse),
    "maintenance/hashkv": ("/etcdserverpb.Maintenance/HashKV", etcd.HashKVRequest, etcd.HashKVResponse),
    "maintenance/transfer-leadership": (
        "/etcdserverpb.Maintenance/MoveLeader", etcd.MoveLeaderRequest, etcd.MoveLeaderResponse,
    ),
    "auth/authenticate": ("/etcdserverpb.Auth/Authenticate", etcd.AuthenticateRequest, etcd.AuthenticateResponse),
    "auth/status": ("/etcdserverpb.Auth/AuthStatus", etcd.AuthStatusRequest, etcd.AuthStatusResponse),
    "lock/lock": ("/v3lockpb.Lock/Lock", lock.LockRequest, lock.LockResponse),
    "lock/unlock": ("/v3lockpb.Lock/Unlock", lock.UnlockRequest, lock.UnlockResponse),
    "election/campaign": ("/v3electionpb.Election/Campaign", election.CampaignRequest, election.CampaignResponse),
    "election/proclaim": ("/v3electionpb.Election/Proclaim", election.ProclaimRequest, election.ProclaimResponse),
    "election/leader": ("/v3electionpb.Election/Leader", election.LeaderRequest, election.LeaderResponse),
    "election/resign": ("/v3electionpb.Election/Resign", election.ResignRequest, election.ResignResponse),
}

# Streaming routes: the body is the one request the stream sends (the stream stays open
# for a watch, as etcd's gateway keeps it until the client goes away).
STREAM_STREAM: dict[str, tuple[str, type[Message], type[Message]]] = {
    "watch": ("/etcdserverpb.Watch/Watch", etcd.WatchRequest, etcd.WatchResponse),
    "lease/keepalive": ("/etcdserverpb.Lease/LeaseKeepAlive", etcd.LeaseKeepAliveRequest, etcd.LeaseKeepAliveResponse),
}
UNARY_STREAM: dict[str, tuple[str, type[Message], type[Message]]] = {
    "election/observe": ("/v3electionpb.Election/Observe", election.LeaderRequest, election.LeaderResponse),
    "maintenance/snapshot": ("/etcdserverpb.Maintenance/Snapshot", etcd.SnapshotRequest, etcd.SnapshotResponse),
}

PREFIXES = ("/v3/", "/v3beta/")

# grpc-gateway's HTTP status for each gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def error_body(code: grpc.StatusCode, message: str) -> dict[str, Any]:
    return {"error": message, "code": code.value[0], "message": message}


def error_response(code: grpc.StatusCode, message: str) -> web.Response:
    return web.json_response(error_body(code, message), status=HTTP_STATUS.get(code, 500))


async def parse(request: web.Request, cls: type[Message]) -> Message:
    """The request body as ``cls`` (an empty body is the empty message)."""
    text = await request.text()
    message = cls()
    if text.strip():
        json_format.Parse(text, message, ignore_unknown_fields=True)
    return message


class Gateway:
    def __init__(self, channel: grpc.aio.Channel, metadata: Any) -> None:
        self.channel = channel
        self.metadata = metadata

    def _serializers(self, response_cls: type[Message]) -> dict[str, Any]:
        return {
            "request_serializer": lambda m: m.SerializeToString(),
            "response_deserializer": response_cls.FromString,
        }

    def unary(self, method: str, request_cls: type[Message], response_cls: type[Message]) -> Any:
        call = self.channel.unary_unary(method, **self._serializers(response_cls))

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                message = await parse(request, request_cls)
            except (json_format.ParseError, ValueError) as err:
                return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            try:
                response = await call(message, metadata=self.metadata(request))
            except grpc.aio.AioRpcError as err:
                return error_response(err.code(), err.details() or "")
            return web.json_response(to_json(response))

        return handle

    def streaming(self, method: str, request_cls: type[Message], response_cls: type[Message], client_streams: bool) -> Any:
        call: Any = (
            self.channel.stream_stream(method, **self._serializers(response_cls)) if client_streams
            else self.channel.unary_stream(method, **self._serializers(response_cls))
        )

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                message = await parse(request, request_cls)
            except (json_format.ParseError, ValueError) as err:
                return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            metadata = self.metadata(request)
            stream = call(_one_then_hold(message, keep_open=method.endswith("/Watch")), metadata=metadata) if client_streams \
                else call(message, metadata=metadata)
            out = web.StreamResponse(headers={"Content-Type": "application/json"})
            await out.prepare(request)
            try:
                async for response in stream:
                    await out.write(json.dumps({"result": to_json(response)}).encode() + b"\n")
            except grpc.aio.AioRpcError as err:
                await out.write(json.dumps(error_body(err.code(), err.details() or "")).encode() + b"\n")
            except (ConnectionResetError, RuntimeError):
                pass
            finally:
                stream.cancel()
            await out.write_eof()
            return out

        return handle


async def _one_then_hold(message: Message, keep_open: bool) -> AsyncIterator[Message]:
    """A request stream of one message; a watch's stays open (half-closing it would not
    end etcd's watch either, but some servers end the call)."""
    yield message
    if keep_open:
        import asyncio

        await asyncio.Event().wait()


async def version(request: web.Request) -> web.Response:
    """etcd's /version: clients such as etcd3gw pick the API prefix from it."""
    return web.json_response({"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_VERSION})


def health(channel: grpc.aio.Channel, metadata: Any) -> Any:
    """etcd's /health: healthy when a linearizable read succeeds (a leader and a quorum)."""
    call: grpc.aio.UnaryUnaryMultiCallable[etcd.RangeRequest, etcd.RangeResponse] = channel.unary_unary(
        "/etcdserverpb.KV/Range", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=etcd.RangeResponse.FromString,
    )

    async def handle(request: web.Request) -> web.Response:
        try:
            await call(etcd.RangeRequest(key=b"health"), metadata=metadata(request), timeout=5)
        except grpc.aio.AioRpcError as err:
            if err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return web.json_response({"health": "false", "reason": err.details() or ""}, status=503)
        return web.json_response({"health": "true", "reason": ""})

    return handle


def add_routes(app: web.Application, ctx: Any) -> None:
    """Register the gateway's routes (an HTTP surface; coord_server/server.py HTTP_SURFACES)."""
    gateway = Gateway(ctx.channel, ctx.metadata)
    for prefix in PREFIXES:
        for path, (method, req, resp) in UNARY.items():
            app.router.add_post(prefix + path, gateway.unary(method, req, resp))
        for path, (method, req, resp) in STREAM_STREAM.items():
            app.router.add_post(prefix + path, gateway.streaming(method, req, resp, client_streams=True))
        for path, (method, req, resp) in UNARY_STREAM.items():
            app.router.add_post(prefix + path, gateway.streaming(method, req, resp, client_streams=False))
    app.router.add_get("/version", version)
    app.router.add_get("/health", health(ctx.channel, ctx.metadata))

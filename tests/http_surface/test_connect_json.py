"""coord.v1 over HTTP as Connect JSON, called like curl would (aiohttp client requests)
against real coord-server members: unary calls in JSON and binary, Connect errors with
their HTTP statuses, and the streaming RPCs (Election.Observe, KV.Watch) as Connect
streams."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from typing import Any

import aiohttp
import pytest

from coord.v1 import kv_pb2
from coord_server.http.connect import coord_services
from tests.integration.harness import Cluster


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def call(url: str, path: str, body: Any, **headers: str) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + path, data=data, headers={"Content-Type": "application/json", **headers}) as r:
            text = await r.text()
            return r.status, (json.loads(text) if r.content_type == "application/json" else text), dict(r.headers)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_coord_v1_rpc_has_a_route(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    url = urls["n1"]
    for service in coord_services():
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            streaming = method.client_streaming or method.server_streaming
            status, _, headers = run(call(url, path, b"{}", **({"Content-Type": "text/plain"})))
            # A wrong content type is refused by the route itself (a missing route is 404),
            # which names the content types of a unary or a streaming call.
            assert status == 415, (path, status)
            assert ("connect+json" in headers["Accept-Post"]) == streaming, (path, headers)


def test_put_then_range_in_canonical_json(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    key = f"http/{uuid.uuid4().hex}"
    status, put, _ = run(call(urls["n2"], "/coord.v1.KV/Put", {"key": b64(key), "value": b64("bar")}))
    assert status == 200, put
    assert int(put["header"]["revision"]) > 0  # int64 as a JSON string (canonical mapping)
    assert isinstance(put["header"]["revision"], str)
    status, got, _ = run(call(urls["n3"], "/coord.v1.KV/Range", {"key": b64(key)}))
    assert status == 200, got
    [kv] = got["kvs"]
    assert base64.b64decode(kv["value"]) == b"bar"
    assert kv["modRevision"] == put["header"]["revision"]  # lowerCamelCase names


def test_binary_protobuf_bodies_are_accepted(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    key = f"http/{uuid.uuid4().hex}".encode()

    async def go() -> kv_pb2.RangeResponse:
        async with aiohttp.ClientSession() as s:
            headers = {"Content-Type": "application/proto"}
            body = kv_pb2.PutRequest(key=key, value=b"v").SerializeToString()
            async with s.post(urls["n1"] + "/coord.v1.KV/Put", data=body, headers=headers) as r:
                assert r.status == 200 and r.content_type == "application/proto"
            body = kv_pb2.RangeRequest(key=key).SerializeToString()
            async with s.post(urls["n1"] + "/coord.v1.KV/Range", data=body, headers=headers) as r:
                return kv_pb2.RangeResponse.FromString(await r.read())

    assert run(go()).kvs[0].value == b"v"


@pytest.mark.parametrize("path, body, status, code", [
    ("/coord.v1.Lease/Revoke", {"id": "123456789"}, 404, "not_found"),
    ("/coord.v1.KV/Put", {"key": ""}, 400, "invalid_argument"),
    ("/coord.v1.KV/Put", "{not json", 400, "invalid_argument"),
    ("/coord.v1.KV/Put", {"kee": "eA=="}, 400, "invalid_argument"),
    ("/coord.v1.Lock/Release", {"name": "no-such-lock", "token": "7"}, 400, "failed_precondition"),
    ("/coord.v1.KV/Range", {"key": "eA==", "revision": "999999999"}, 400, "out_of_range"),
])
def test_errors_are_connect_error_json(
    http_cluster: tuple[Cluster, dict[str, str]], path: str, body: Any, status: int, code: str
) -> None:
    _, urls = http_cluster
    got_status, got, _ = run(call(urls["n1"], path, body))
    assert (got_status, got["code"]) == (status, code), got
    assert got["message"]


def _envelope(payload: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(payload).encode()
    return struct.pack(">BI", flags, len(data)) + data


async def _read_envelope(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    head = await response.content.readexactly(5)
    flags, size = struct.unpack(">BI", head)
    return flags, json.loads(await response.content.readexactly(size))


def test_observe_streams_leaders_as_connect_envelopes(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    name = f"http-election-{uuid.uuid4().hex}"

    async def go() -> list[Any]:
        seen = []
        async with aiohttp.ClientSession() as s:
            headers = {"Content-Type": "application/connect+json"}
            async with s.post(urls["n2"] + "/coord.v1.Election/Observe", data=_envelope({"name": name}), headers=headers) as r:
                assert r.status == 200 and r.content_type == "application/connect+json"
                flags, first = await _read_envelope(r)
                assert flags == 0 and "leader" not in first  # nobody leads yet
                _, lease, _ = await call(urls["n1"], "/coord.v1.Lease/Grant", {"ttl": "10"})
                status, won, _ = await call(urls["n1"], "/coord.v1.Election/Campaign",
                                            {"name": name, "lease": lease["id"], "value": b64("me")})
                assert status == 200, won
                flags, second = await asyncio.wait_for(_read_envelope(r), 20)
                seen += [first, second]
                await call(urls["n1"], "/coord.v1.Lease/Revoke", {"id": lease["id"]})
                flags, third = await asyncio.wait_for(_read_envelope(r), 20)
                seen.append(third)
        return seen

    first, second, third = run(go())
    assert base64.b64decode(second["value"]) == b"me" and second["leader"]["name"] == name
    assert "leader" not in third


def test_watch_streams_events_after_a_create_request(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    prefix = f"http-watch/{uuid.uuid4().hex}/"

    async def go() -> list[Any]:
        events: list[Any] = []
        async with aiohttp.ClientSession() as s:
            headers = {"Content-Type": "application/connect+json"}
            create = {"createRequest": {"key": b64(prefix), "rangeEnd": b64(prefix[:-1] + "0")}}
            async with s.post(urls["n3"] + "/coord.v1.KV/Watch", data=_envelope(create), headers=headers) as r:
                _, created = await asyncio.wait_for(_read_envelope(r), 20)
                assert created.get("created"), created
                for i in range(2):
                    await call(urls["n1"], "/coord.v1.KV/Put", {"key": b64(f"{prefix}{i}"), "value": b64("x")})
                while len(events) < 2:
                    _, msg = await asyncio.wait_for(_read_envelope(r), 20)
                    events += msg.get("events", [])
        return events

    events = run(go())
    assert [base64.b64decode(e["kv"]["key"]).decode() for e in events] == [f"{prefix}0", f"{prefix}1"]


def test_a_stream_error_ends_with_connect_end_of_stream(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster

    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            headers = {"Content-Type": "application/connect+json"}
            async with s.post(urls["n1"] + "/coord.v1.Election/Observe", data=_envelope({"name": ""}), headers=headers) as r:
                assert r.status == 200
                return await asyncio.wait_for(_read_envelope(r), 20)

    flags, end = run(go())
    assert flags == 2 and end["error"]["code"] == "invalid_argument"


def test_coord_member_routes_a_call_to_another_member(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster
    _, listed, _ = run(call(urls["n1"], "/coord.v1.Cluster/MemberList", {}))
    ids = {m["name"]: m["id"] for m in listed["members"]}
    for name, member_id in ids.items():
        status, answer, _ = run(call(urls["n1"], "/coord.v1.Cluster/Status", {}, **{"Coord-Member": member_id}))
        assert status == 200, answer
        assert answer["header"]["memberId"] == member_id, (name, answer)
        assert "watchers" in answer or "leases" in answer or answer["appliedIndex"]
    status, answer, _ = run(call(urls["n1"], "/coord.v1.Cluster/Status", {}, **{"Coord-Member": "12345"}))
    assert (status, answer["code"]) == (404, "not_found")


def test_status_counts_watchers_and_leases(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    _, urls = http_cluster

    async def go() -> tuple[Any, Any]:
        _, before, _ = await call(urls["n2"], "/coord.v1.Cluster/Status", {})
        _, lease, _ = await call(urls["n2"], "/coord.v1.Lease/Grant", {"ttl": "30"})
        async with aiohttp.ClientSession() as s:
            headers = {"Content-Type": "application/connect+json"}
            create = {"createRequest": {"key": b64("counted")}}
            async with s.post(urls["n2"] + "/coord.v1.KV/Watch", data=_envelope(create), headers=headers) as r:
                await asyncio.wait_for(_read_envelope(r), 20)
                _, during, _ = await call(urls["n2"], "/coord.v1.Cluster/Status", {})
        await call(urls["n2"], "/coord.v1.Lease/Revoke", {"id": lease["id"]})
        return before, during

    before, during = run(go())
    assert int(during.get("watchers", 0)) == int(before.get("watchers", 0)) + 1
    assert int(during.get("leases", 0)) >= 1  # ours at least (other tests' leases come and go)


def test_time_to_live_lists_what_a_lease_holds(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    """Lease.TimeToLive with attachments names the lease's keys, locks, elections and ring
    members, as lease.proto promises (the dashboard finds locks and elections this way)."""
    _, urls = http_cluster
    tag = uuid.uuid4().hex

    async def go() -> Any:
        url = urls["n1"]
        _, lease, _ = await call(url, "/coord.v1.Lease/Grant", {"ttl": "30"})
        lid = lease["id"]
        for path, body in [
            ("/coord.v1.KV/Put", {"key": b64(f"ttl/{tag}"), "value": b64("v"), "lease": lid}),
            ("/coord.v1.Lock/Acquire", {"name": f"lock-{tag}", "lease": lid}),
            ("/coord.v1.Election/Campaign", {"name": f"election-{tag}", "lease": lid, "value": b64("x")}),
            ("/coord.v1.Ring/Join", {"ring": f"ring-{tag}", "memberId": "m1", "lease": lid}),
        ]:
            status, answer, _ = await call(url, path, body)
            assert status == 200, (path, answer)
        _, info, _ = await call(url, "/coord.v1.Lease/TimeToLive", {"id": lid, "attachments": True})
        await call(url, "/coord.v1.Lease/Revoke", {"id": lid})
        return info

    info = run(go())
    assert [base64.b64decode(k).decode() for k in info["keys"]] == [f"ttl/{tag}"]
    assert info["locks"] == [f"lock-{tag}"]
    assert info["elections"] == [f"election-{tag}"]
    assert info["ringMembers"] == [{"ring": f"ring-{tag}", "memberId": "m1"}]

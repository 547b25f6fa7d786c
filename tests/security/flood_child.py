"""A misbehaving client, run as its own process by test_quota.py: for SECONDS it floods
one member with oversized puts, undecodable and invalid requests, lease grants past the
limit, and watch streams on the victim's keys that it never reads. Prints one JSON object:
how many of each were sent and which status codes came back.

    python -m tests.security.flood_child ADDRESS SECONDS WATCH_PREFIX
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import grpc

from coord.v1 import kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc


async def flood(address: str, seconds: float, watch_prefix: bytes) -> dict[str, dict[str, int]]:
    outcomes: dict[str, Counter[str]] = {k: Counter() for k in ("oversized", "undecodable", "invalid", "lease", "watch")}
    deadline = time.monotonic() + seconds
    channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)])
    kv = kv_pb2_grpc.KVStub(channel)
    lease = lease_pb2_grpc.LeaseStub(channel)
    raw_put = channel.unary_unary("/coord.v1.KV/Put")
    big = b"x" * (2 * 1024 * 1024)

    async def record(kind: str, call: asyncio.Future[object] | object) -> None:
        try:
            await call  # type: ignore[misc]
            outcomes[kind]["OK"] += 1
        except grpc.aio.AioRpcError as err:
            outcomes[kind][err.code().name] += 1

    async def loop(kind: str, make: object) -> None:
        while time.monotonic() < deadline:
            await record(kind, make())  # type: ignore[operator]

    async def slow_watchers() -> None:
        calls = []
        while time.monotonic() < deadline:
            call = kv.Watch()
            await call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(
                key=watch_prefix, range_end=watch_prefix[:-1] + bytes([watch_prefix[-1] + 1]), prev_kv=True)))
            calls.append(call)  # never read: the member must bound what it buffers for us
            outcomes["watch"]["opened"] += 1
            await asyncio.sleep(0.05)
        for call in calls:
            call.cancel()

    await asyncio.gather(
        *(loop("oversized", lambda: kv.Put(kv_pb2.PutRequest(key=b"flood/big", value=big), timeout=10)) for _ in range(2)),
        *(loop("undecodable", lambda: raw_put(b"\xff\xff\xff\xff garbage", timeout=10)) for _ in range(2)),
        loop("invalid", lambda: kv.Put(kv_pb2.PutRequest(key=b"", value=b"v"), timeout=10)),
        loop("invalid", lambda: kv.Range(kv_pb2.RangeRequest(key=b"k" * 10_000), timeout=10)),
        loop("lease", lambda: lease.Grant(lease_pb2.LeaseGrantRequest(ttl=60), timeout=10)),
        slow_watchers(),
    )
    await channel.close()
    return {k: dict(v) for k, v in outcomes.items()}


if __name__ == "__main__":
    result = asyncio.run(flood(sys.argv[1], float(sys.argv[2]), sys.argv[3].encode()))
    print(json.dumps(result))

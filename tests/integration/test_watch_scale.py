"""Many watchers on real members, none missing an event or getting one twice (issue #22).

Watchers spread over every member (several Watch streams each, hundreds of watchers per
stream, several watchers per key, and prefix watchers over the whole range) while a
writer puts to random watched keys with many puts in flight. Every single-key watcher
must receive exactly the revisions written to its key, in order; every prefix watcher
exactly all of them; and every event no later than the member's next revisions allow.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import grpc

from coord.v1 import kv_pb2, kv_pb2_grpc
from tests.integration.harness import Cluster

KEYS = 400
WATCHERS_PER_KEY = 5
STREAMS_PER_MEMBER = 4
PREFIX_WATCHERS = 6
PUTS = 1500
IN_FLIGHT = 64


def key_of(i: int) -> bytes:
    return b"ws/%05d" % i


async def _stream(address: str, creates: list[kv_pb2.WatchCreateRequest], got: dict[tuple[str, int], list[int]],
                  ready: asyncio.Event, need: list[int]) -> None:
    """One Watch stream with ``creates``; records each watcher's revisions under
    (its stream-local name, its index in ``creates``)."""
    name = f"{address}/{id(creates)}"
    async with grpc.aio.insecure_channel(address) as channel:
        call = kv_pb2_grpc.KVStub(channel).Watch()
        for req in creates:
            await call.write(kv_pb2.WatchRequest(create_request=req))
        by_id: dict[int, int] = {}
        try:
            async for response in call:
                if response.created:
                    assert not response.canceled, response.cancel_reason
                    by_id[response.watch_id] = len(by_id)
                    need[0] -= 1
                    if need[0] == 0:
                        ready.set()
                    continue
                assert not response.canceled, f"watcher canceled: {response.cancel_reason}"
                revs = got[(name, by_id[response.watch_id])]
                revs.extend(e.kv.mod_revision for e in response.events)
        except asyncio.CancelledError:
            call.cancel()
            raise


async def _run(cluster: Cluster) -> str:
    addresses = [node.address for node in cluster.nodes.values()]
    rng = random.Random(22)
    got: dict[tuple[str, int], list[int]] = defaultdict(list)
    plans: list[tuple[str, list[kv_pb2.WatchCreateRequest], list[int | None]]] = []
    # Watcher j of key k goes to stream (k * WATCHERS_PER_KEY + j) mod (streams): every
    # key is watched on several members and streams.
    streams = [(a, []) for a in addresses for _ in range(STREAMS_PER_MEMBER)]
    keys_of: list[list[int | None]] = [[] for _ in streams]
    for k in range(KEYS):
        for j in range(WATCHERS_PER_KEY):
            s = (k * WATCHERS_PER_KEY + j) % len(streams)
            streams[s][1].append(kv_pb2.WatchCreateRequest(key=key_of(k)))
            keys_of[s].append(k)
    for p in range(PREFIX_WATCHERS):
        s = p % len(streams)
        streams[s][1].append(kv_pb2.WatchCreateRequest(key=b"ws/", range_end=b"ws0"))
        keys_of[s].append(None)
    plans = [(a, creates, ks) for (a, creates), ks in zip(streams, keys_of)]
    need = [KEYS * WATCHERS_PER_KEY + PREFIX_WATCHERS]
    ready = asyncio.Event()
    tasks = [asyncio.ensure_future(_stream(a, creates, got, ready, need)) for a, creates, _ in plans]
    try:
        await asyncio.wait_for(ready.wait(), 60)
        leader = await asyncio.to_thread(cluster.wait_for_leader)
        written: dict[int, list[int]] = defaultdict(list)
        all_revs: list[int] = []
        async with grpc.aio.insecure_channel(cluster.nodes[leader].address) as channel:
            kv = kv_pb2_grpc.KVStub(channel)
            sem = asyncio.Semaphore(IN_FLIGHT)

            async def put(k: int) -> None:
                async with sem:
                    r = await kv.Put(kv_pb2.PutRequest(key=key_of(k), value=b"v" * 64), timeout=30)
                    written[k].append(r.header.revision)
                    all_revs.append(r.header.revision)

            began = time.monotonic()
            await asyncio.gather(*(put(rng.randrange(KEYS)) for _ in range(PUTS)))
            wrote_in = time.monotonic() - began
        expected_events = PUTS * (WATCHERS_PER_KEY + PREFIX_WATCHERS)
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < expected_events and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a duplicate would come now
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    names = {id(creates): f"{a}/{id(creates)}" for a, creates, _ in plans}
    problems = []
    for a, creates, ks in plans:
        for index, k in enumerate(ks):
            revs = got.get((names[id(creates)], index), [])
            want = sorted(all_revs) if k is None else sorted(written[k])
            if revs != want:
                missing = sorted(set(want) - set(revs))
                dups = len(revs) - len(set(revs))
                problems.append(f"{a} watcher of {'prefix' if k is None else key_of(k)!r}: {len(missing)} missing "
                                f"(first {missing[:3]}), {dups} duplicated, in order: {revs == sorted(revs)}")
    assert not problems, f"{len(problems)} watchers wrong: {problems[:5]}"
    return (f"{KEYS * WATCHERS_PER_KEY + PREFIX_WATCHERS} watchers on {len(addresses)} members, "
            f"{PUTS} puts in {wrote_in:.1f}s, {expected_events} events, none missed or duplicated")


def test_many_watchers_miss_nothing_and_get_nothing_twice(cluster: Cluster) -> None:
    print("\n" + asyncio.run(_run(cluster)))

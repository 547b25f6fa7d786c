"""A store large enough that pausing the event loop for it would cost the leader its
leadership: 3 real members, with the DEFAULT timing, snapshotting every few hundred
entries while a client loads a few hundred thousand keys at full speed. Any term change
fails the test.

Why these numbers: serialising the state on the loop took roughly 2.5 s per million
keys on an idle machine, two to three times that on a busy one; at 300,000 keys a member
taking a snapshot that way paused past the election timeout (1-2 s by default, 0.3-0.6
s before) and the followers elected another leader. A low --snapshot-entries makes
every member snapshot many times during the load, at every store size. Put back the
one-piece snapshot (snapshotter.py Rule 2's path for every storage) and this test fails.

The load runs in a child process at a lower CPU priority (nice 10): on 2 shared cores
the client competes with the members it loads, and a client starved of CPU only slows
the load, while a member starved of CPU is what this test must not confuse with a
member that stops itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.integration.harness import Cluster, leader_hint

KEYS = int(os.environ.get("COORD_LARGE_STORE_KEYS", "300000"))
PUTS_PER_TXN = 128
IN_FLIGHT = 8
VALUE = b"v" * 256
LOAD_DEADLINE = 240.0


def key_of(i: int) -> bytes:
    return b"scale/%058d" % i  # 64 bytes, as etcd's storage-memory benchmark


async def load(address: str, count: int, find_address: Callable[[str], str | None]) -> None:
    """Put ``count`` keys through Txn requests of PUTS_PER_TXN puts, IN_FLIGHT at once,
    following the leader when told to."""
    batches = [range(start, min(start + PUTS_PER_TXN, count)) for start in range(0, count, PUTS_PER_TXN)]
    todo = list(reversed(batches))
    deadline = time.monotonic() + LOAD_DEADLINE
    state = {"address": address}
    channels: dict[str, grpc.aio.Channel] = {}

    def stub() -> kv_pb2_grpc.KVStub:
        addr = state["address"]
        if addr not in channels:
            channels[addr] = grpc.aio.insecure_channel(addr)
        return kv_pb2_grpc.KVStub(channels[addr])

    async def worker() -> None:
        while todo:
            batch = todo.pop()
            request = kv_pb2.TxnRequest(
                success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key_of(i), value=VALUE)) for i in batch]
            )
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the load did not finish in {LOAD_DEADLINE:.0f} s")
                try:
                    await stub().Txn(request, timeout=30)
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    hint = leader_hint(err)
                    found = find_address(hint) if hint else None
                    if found:
                        state["address"] = found
                    await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    finally:
        for channel in channels.values():
            await channel.close()


def terms(cluster: Cluster) -> dict[str, int]:
    out = {}
    for name in cluster.live_names():
        out[name] = cluster.status(name, timeout=10).header.raft_term
    return out


def test_loading_a_large_store_holds_no_election(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, options=["--snapshot-entries", "300"])
    leader = cluster.wait_for_leader()
    before = terms(cluster)
    assert len(set(before.values())) == 1, before

    subprocess.run(
        [sys.executable, "-m", "tests.integration.test_large_store", cluster.nodes[leader].address, str(KEYS)],
        cwd=Path(__file__).resolve().parents[2], check=True, timeout=LOAD_DEADLINE + 60,
        preexec_fn=lambda: os.nice(10),
    )

    after = terms(cluster)
    snapshots = {
        name: cluster.stub(name, cluster_pb2_grpc.ClusterStub)
        .Status(cluster_pb2.ClusterStatusRequest(), timeout=10)
        .snapshot_index
        for name in cluster.live_names()
    }
    assert after == before, (
        f"leader changes while loading {KEYS} keys: terms {before} -> {after}\n{cluster.describe(60)}"
    )
    assert all(index > 0 for index in snapshots.values()), f"members took no snapshot: {snapshots}"
    count = cluster.kv(cluster.wait_for_leader()).Range(
        kv_pb2.RangeRequest(key=b"scale/", range_end=b"scale0", count_only=True), timeout=30
    )
    assert count.count == KEYS


if __name__ == "__main__":  # the load, in the child process the test starts
    asyncio.run(load(sys.argv[1], int(sys.argv[2]), lambda hint: hint or None))

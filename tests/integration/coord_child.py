"""Client processes for tests/integration/test_coordination.py (run with ``python -m``).

    python -m tests.integration.coord_child increment ADDRS LOCK KEY COUNT
        grant a lease, then COUNT times: acquire LOCK, read KEY, write KEY+1 in a Txn
        fenced by the lock token, release; print one JSON line per increment
        {"token": T, "value": V} and finally {"done": true}.
    python -m tests.integration.coord_child hold ADDRS LOCK TTL
        grant a lease of TTL seconds, keep it alive, acquire LOCK, print
        {"lease": L, "token": T}, then keep the lease alive until killed.
    python -m tests.integration.coord_child ring-member ADDRS RING MEMBER TTL
        grant a lease of TTL seconds, keep it alive, join RING as MEMBER bound to it,
        print {"lease": L, "version": V}, then keep the lease alive until killed.

ADDRS is a comma-separated list of members; a call that fails with UNAVAILABLE or
DEADLINE_EXCEEDED is retried on the member named in `coord-leader`, or the next one.
Writes carry `coord-client-id` / `coord-seq`, so a retry is applied at most once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from coord.v1 import kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc, lock_pb2, lock_pb2_grpc, ring_pb2, ring_pb2_grpc

RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Client:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.at = 0
        self.channels = {a: grpc.insecure_channel(a) for a in addresses}
        self.client_id = uuid.uuid4().hex
        self.seq = 0

    def stub(self, cls: Any) -> Any:
        return cls(self.channels[self.addresses[self.at]])

    def call(self, cls: Any, method: str, request: Any, *, write: bool = True, timeout: float = 60.0,
             attempt: float = 10.0) -> Any:
        if write:
            self.seq += 1
        metadata = (("coord-client-id", self.client_id), ("coord-seq", str(self.seq))) if write else ()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return getattr(self.stub(cls), method)(request, timeout=attempt, metadata=metadata)
            except grpc.RpcError as err:
                if err.code() not in RETRY or time.monotonic() > deadline:
                    raise
                leader = dict(err.trailing_metadata() or ()).get("coord-leader")
                if leader in self.channels:
                    self.at = self.addresses.index(leader)
                else:
                    self.at = (self.at + 1) % len(self.addresses)
                    time.sleep(0.05)

    def keep_alive(self, lease: int, interval: float) -> None:
        """Keep ``lease`` alive from a daemon thread, reconnecting as needed."""

        def requests() -> Iterator[lease_pb2.LeaseKeepAliveRequest]:
            while True:
                yield lease_pb2.LeaseKeepAliveRequest(id=lease)
                time.sleep(interval)

        def run() -> None:
            while True:
                try:
                    for _ in self.stub(lease_pb2_grpc.LeaseStub).KeepAlive(requests()):
                        pass
                except grpc.RpcError:
                    self.at = (self.at + 1) % len(self.addresses)
                    time.sleep(0.05)

        threading.Thread(target=run, daemon=True).start()


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def increment(c: Client, lock: str, key: bytes, count: int) -> None:
    lease = c.call(lease_pb2_grpc.LeaseStub, "Grant", lease_pb2.LeaseGrantRequest(ttl=60)).id
    for _ in range(count):
        got = c.call(lock_pb2_grpc.LockStub, "Acquire", lock_pb2.LockAcquireRequest(name=lock, lease=lease),
                     attempt=30.0)
        token = got.token
        current = c.call(kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=key), write=False)
        value = int(current.kvs[0].value) if current.kvs else 0
        fenced = kv_pb2.TxnRequest(
            compare=[kv_pb2.Compare(target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN, result=kv_pb2.COMPARE_RESULT_EQUAL,
                                    lock_name=lock, lock_token=token)],
            success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=str(value + 1).encode()))],
        )
        if not c.call(kv_pb2_grpc.KVStub, "Txn", fenced).succeeded:
            raise SystemExit(f"the fenced write with token {token} failed while holding the lock")
        say(token=token, value=value + 1)
        c.call(lock_pb2_grpc.LockStub, "Release", lock_pb2.LockReleaseRequest(name=lock, token=token))
    c.call(lease_pb2_grpc.LeaseStub, "Revoke", lease_pb2.LeaseRevokeRequest(id=lease))
    say(done=True)


def hold(c: Client, lock: str, ttl: int) -> None:
    lease = c.call(lease_pb2_grpc.LeaseStub, "Grant", lease_pb2.LeaseGrantRequest(ttl=ttl)).id
    c.keep_alive(lease, ttl / 4)
    got = c.call(lock_pb2_grpc.LockStub, "Acquire", lock_pb2.LockAcquireRequest(name=lock, lease=lease, owner="child"))
    say(lease=lease, token=got.token)
    while True:
        time.sleep(3600)


def ring_member(c: Client, ring: str, member: str, ttl: int) -> None:
    lease = c.call(lease_pb2_grpc.LeaseStub, "Grant", lease_pb2.LeaseGrantRequest(ttl=ttl)).id
    c.keep_alive(lease, ttl / 4)
    joined = c.call(ring_pb2_grpc.RingStub, "Join",
                    ring_pb2.RingJoinRequest(ring=ring, member_id=member, address="child:1", lease=lease))
    say(lease=lease, version=joined.version)
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> None:
    command, addresses, *rest = argv
    c = Client(addresses.split(","))
    if command == "increment":
        increment(c, rest[0], rest[1].encode(), int(rest[2]))
    elif command == "hold":
        hold(c, rest[0], int(rest[1]))
    elif command == "ring-member":
        ring_member(c, rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

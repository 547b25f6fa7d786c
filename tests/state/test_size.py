"""StateMachine.size_bytes, the backend size the quota checks: equal to the sum over kept
records at every step (puts, deletes, a failing Txn rolled back, compactions, leases
revoked), and the same after a snapshot is restored."""

from __future__ import annotations

import random

from coord.v1 import kv_pb2, lease_pb2
from coord_server.state import StateMachine
from coord_server.state.kv import record_size

from .driver import Driver


def recomputed(sm: StateMachine) -> int:
    return sum(record_size(k, rec) for k, hist in sm._store.items() for rec in hist)


def test_size_follows_every_change_and_survives_a_snapshot() -> None:
    rng = random.Random(8)
    d = Driver()
    assert d.sm.size_bytes == 0
    lease = d.ok(d.cmd(lease_grant=lease_pb2.LeaseGrantRequest(ttl=60))).id
    for step in range(600):
        key = f"k{rng.randrange(40)}".encode()
        roll = rng.random()
        if roll < 0.5:
            d.put(key, b"v" * rng.randrange(200), lease=lease if rng.random() < 0.1 else 0)
        elif roll < 0.7:
            d.cmd(delete_range=kv_pb2.DeleteRangeRequest(key=key, range_end=key + b"5"))
        elif roll < 0.8:
            # A Txn whose second op fails (a put on a lease that does not exist): rolled back.
            d.txn(success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=b"x")),
                           kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"z", value=b"x", lease=999))])
        elif roll < 0.85 and d.sm.revision > d.sm.compact_revision + 1:
            d.compact(rng.randrange(d.sm.compact_revision + 1, d.sm.revision + 1))
        assert d.sm.size_bytes == recomputed(d.sm), f"step {step}"
    grown = d.sm.size_bytes
    d.cmd(lease_revoke=lease_pb2.LeaseRevokeRequest(id=lease))
    assert d.sm.size_bytes == recomputed(d.sm) >= grown  # revoking deletes: tombstones first
    d.cmd(delete_range=kv_pb2.DeleteRangeRequest(key=b"\0", range_end=b"\0"))
    d.compact(d.sm.revision)
    assert d.sm.size_bytes == recomputed(d.sm) == 0
    d.put(b"after", b"1234")
    restored = StateMachine.restore(d.sm.snapshot())
    assert restored.size_bytes == d.sm.size_bytes == record_size(b"after", (0, 0, 0, 1, b"1234", 0))

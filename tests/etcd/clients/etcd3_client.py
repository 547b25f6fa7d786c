"""python-etcd3 (``etcd3``, unmodified) through its main operations against the server
at argv[1] (host:port); prints "ALL OK" when every assertion held. Run in its own
interpreter by tests/etcd/test_python_clients.py, against coord and real etcd alike."""

import sys
import threading
import time

import etcd3
import etcd3.exceptions

host, port = sys.argv[1].rsplit(":", 1)
c = etcd3.client(host=host, port=int(port), timeout=20)

# KV
c.put("p3/a", "1")
c.put("p3/b", "2")
value, meta = c.get("p3/a")
assert value == b"1" and meta.key == b"p3/a" and meta.version == 1, (value, meta)
assert c.get("p3/missing") == (None, None)
assert [v for v, _ in c.get_prefix("p3/")] == [b"1", b"2"]
assert [m.key for _, m in c.get_prefix("p3/", sort_order="descend")] == [b"p3/b", b"p3/a"]
assert c.replace("p3/a", "1", "11") is True
assert c.replace("p3/a", "1", "12") is False
assert c.delete("p3/b") is True
assert c.delete("p3/b") is False

# Txn
ok, responses = c.transaction(
    compare=[c.transactions.value("p3/a") == "11", c.transactions.version("p3/a") > 0],
    success=[c.transactions.put("p3/t", "yes"), c.transactions.get("p3/a")],
    failure=[c.transactions.put("p3/t", "no")],
)
assert ok and c.get("p3/t")[0] == b"yes"
assert responses[1][0][0] == b"11"

# Leases
lease = c.lease(30)
c.put("p3/leased", "x", lease=lease)
assert 25 <= lease.remaining_ttl <= 30, lease.remaining_ttl
assert lease.granted_ttl == 30
assert lease.keys == [b"p3/leased"]
lease.refresh()
assert lease.id in [le.id for le in c.get_leases()] if hasattr(c, "get_leases") else True
lease.revoke()
assert c.get("p3/leased") == (None, None)
assert lease.remaining_ttl == -1

# Watch
events, cancel = c.watch_prefix("p3/w")
c.put("p3/w1", "a")
c.delete("p3/w1")
first, second = next(events), next(events)
cancel()
assert isinstance(first, etcd3.events.PutEvent) and first.value == b"a"
assert isinstance(second, etcd3.events.DeleteEvent) and second.key == b"p3/w1"

# Lock (python-etcd3 builds it from a lease and a Txn)
held = []
with c.lock("p3lock", ttl=10) as lock:
    assert lock.is_acquired()
    # (a second, contended acquire is not tried: python-etcd3 0.12's retry loop fails
    # with today's tenacity whatever the server)
    assert c.get("/locks/p3lock")[0] is not None
    held.append(True)
assert held

assert c.get("/locks/p3lock") == (None, None)

# Errors, as python-etcd3 maps them (by gRPC code)
try:
    c.revoke_lease(123456789)
    raise AssertionError("revoke of an unknown lease succeeded")
except Exception as err:  # noqa: BLE001 - python-etcd3 passes NOT_FOUND through as grpc's error
    assert "etcdserver: requested lease not found" in str(err), err
rev = c.get("p3/a")[1].mod_revision
c.put("p3/a", "13")
c.compact(c.get("p3/a")[1].mod_revision)
events, cancel = c.watch("p3/a", start_revision=rev)
try:
    next(events)
    raise AssertionError("a watch from a compacted revision delivered events")
except etcd3.exceptions.RevisionCompactedError as err:
    assert err.compacted_revision > rev
cancel()

# Cluster and maintenance
status = c.status()
assert status.version.startswith("3.")
assert status.leader is not None and status.leader.id == status.leader.id
members = list(c.members)
assert len(members) >= 1 and all(m.client_urls for m in members)
print("ALL OK")

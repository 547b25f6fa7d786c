"""etcd3gw (OpenStack's client for etcd's JSON gateway, unmodified) through its main
operations against the gateway at argv[1] (host:port); prints "ALL OK"."""

import sys
import threading

import etcd3gw

host, port = sys.argv[1].rsplit(":", 1)
c = etcd3gw.client(host=host, port=int(port), timeout=20)

assert c.put("gw/a", "1") is True
assert c.get("gw/a") == [b"1"]
assert c.get("gw/missing") == []
assert c.create("gw/a", "x") is False
assert c.create("gw/new", "n") is True
assert c.replace("gw/a", "1", "2") is True
assert c.replace("gw/a", "1", "3") is False
assert sorted(v for v, _ in c.get_prefix("gw/")) == [b"2", b"n"]
assert c.delete("gw/new") is True
assert c.delete("gw/new") is False

lease = c.lease(30)
assert c.put("gw/leased", "x", lease=lease) is True
assert 25 <= lease.ttl() <= 30
assert lease.keys() == [b"gw/leased"]
assert lease.refresh() == 30
assert lease.revoke() is True
assert c.get("gw/leased") == []

events, cancel = c.watch("gw/w")
ready = threading.Event()
done = []


def read() -> None:
    for event in events:
        done.append(event)
        break


reader = threading.Thread(target=read, daemon=True)
reader.start()
import time

time.sleep(0.5)
c.put("gw/w", "v")
reader.join(20)
cancel()
assert done and done[0]["kv"]["value"] == b"v", done

lock = c.lock("gwlock", ttl=30)
assert lock.acquire() is True
assert lock.is_acquired()
assert lock.release() is True

status = c.status()
assert status["version"].startswith("3.")
assert c.members()
print("ALL OK")

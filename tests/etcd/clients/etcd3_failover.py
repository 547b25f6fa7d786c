"""python-etcd3 writing through one coord member (argv[1]) while the leader is killed:
each put is retried, as an application using python-etcd3 does, on the errors
python-etcd3 raises for an unavailable server; every key must then read back. Prints
progress lines ("wrote N") and "ALL OK"."""

import sys
import time

import etcd3
import etcd3.exceptions

host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2])
c = etcd3.client(host=host, port=int(port), timeout=5)
RETRYABLE = (etcd3.exceptions.ConnectionFailedError, etcd3.exceptions.ConnectionTimeoutError)
retries = 0
for i in range(count):
    deadline = time.monotonic() + 30
    while True:
        try:
            c.put(f"fo/{i:04d}", str(i))
            break
        except RETRYABLE:
            retries += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    print(f"wrote {i + 1}", flush=True)
    time.sleep(0.01)
values = {m.key: v for v, m in c.get_prefix("fo/")}
assert len(values) == count, (len(values), count)
assert all(values[f"fo/{i:04d}".encode()] == str(i).encode() for i in range(count))
print(f"retries {retries}")
print("ALL OK")

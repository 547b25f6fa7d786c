"""Run inside a network namespace by test_netns.py: write KEY=VALUE through the cluster
at ENDPOINTS and read it back, retrying until DEADLINE seconds pass; print one JSON line
with the value read, the leader's name and how long it took (or the last error)."""

from __future__ import annotations

import json
import sys
import time

from coord_client import Client, errors


def main() -> int:
    endpoints, key, value, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    start = time.monotonic()
    last = "no attempt"
    with Client(endpoints, timeout=5) as client:
        while time.monotonic() - start < limit:
            try:
                client.put(key, value)
                got = client.get(key)
                names = {m.id: m.name for m in client.members(linearizable=True)}
                leader = client.status().leader
                print(json.dumps({
                    "value": got.value.decode() if got else None,
                    "leader": names.get(leader, ""),
                    "took": round(time.monotonic() - start, 3),
                }))
                return 0
            except errors.CoordError as err:
                last = f"{type(err).__name__}: {err}"
                time.sleep(0.2)
    print(json.dumps({"error": last, "took": round(time.monotonic() - start, 3)}))
    return 1


if __name__ == "__main__":
    sys.exit(main())

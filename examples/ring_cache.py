"""A cache client that shards by ring: cache nodes join the coord ring ``cache-demo`` (each
bound to its lease, so a node that dies leaves the ring by itself), and clients route
every key with a RingView, a local copy of the ring that coord keeps current: a lookup is
a local computation, with no round trip, and agrees with the server's Ring.Lookup.

    python examples/ring_cache.py                 # the whole demo, in one process
    python examples/ring_cache.py --ring my-cache --keys 50

The demo starts three tiny TCP cache nodes (a line protocol: ``SET k v`` / ``GET k``),
writes keys to each key's two preferred nodes (a primary and a replica), stops one node,
and shows that every key is still served: the view dropped the node as soon as its lease
was revoked, and reads fall through to the replica. Endpoints come from $COORD_ENDPOINTS.
"""

from __future__ import annotations

import argparse
import collections
import socket
import socketserver
import threading

from coord_client import Client
from coord_client.sync import Lease, RingView


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        store: dict[str, str] = self.server.store  # type: ignore[attr-defined]
        for line in self.rfile:
            verb, _, rest = line.decode().rstrip("\n").partition(" ")
            if verb == "SET":
                key, _, value = rest.partition(" ")
                store[key] = value
                self.wfile.write(b"OK\n")
            elif verb == "GET":
                self.wfile.write(f"VALUE {store[rest]}\n".encode() if rest in store else b"MISS\n")


class CacheNode:
    """One cache server, a member of the ring while its lease lives."""

    def __init__(self, client: Client, ring: str, name: str) -> None:
        self.name = name
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self.server.store = {}  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        host, port = self.server.socket.getsockname()[:2]
        self.address = f"{host}:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.lease: Lease = client.grant_lease(5)  # kept alive while this process runs
        client.ring_join(ring, name, self.address, lease=self.lease)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.lease.revoke()  # leave the ring now (a crash would leave it within the TTL)


class ShardedCache:
    """Routes each key to its ``replicas`` preferred nodes, by the ring view."""

    def __init__(self, view: RingView, replicas: int = 2) -> None:
        self.view = view
        self.replicas = replicas

    def _ask(self, address: str, line: str) -> str:
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=2) as conn:
            conn.sendall(line.encode() + b"\n")
            return conn.makefile().readline().rstrip("\n")

    def set(self, key: str, value: str) -> None:
        for member in self.view.lookup_members(key, self.replicas):
            self._ask(member.address, f"SET {key} {value}")

    def get(self, key: str) -> str | None:
        for member in self.view.lookup_members(key, self.replicas):
            try:
                reply = self._ask(member.address, f"GET {key}")
            except OSError:
                continue  # a node that just died: try the next one
            if reply.startswith("VALUE "):
                return reply[len("VALUE "):]
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ring", default="cache-demo")
    parser.add_argument("--keys", type=int, default=30)
    args = parser.parse_args()

    with Client() as client:
        nodes = [CacheNode(client, args.ring, f"cache-{c}") for c in "abc"]
        with client.ring_view(args.ring) as view:
            view.wait_for_version(client.ring_get(args.ring).version, timeout=10)
            cache = ShardedCache(view)
            keys = [f"user:{i}" for i in range(args.keys)]
            for key in keys:
                cache.set(key, key.upper())
            primaries = collections.Counter(view.lookup(key)[0] for key in keys)
            print(f"ring {args.ring} v{view.version}: primaries {dict(sorted(primaries.items()))}")
            assert all(view.lookup(k, 2) == [m.id for m in client.ring_lookup(args.ring, k, 2)] for k in keys[:10])

            gone, before = nodes.pop(1), view.version
            gone.stop()
            view.wait_for_version(before + 1, timeout=10)
            print(f"{gone.name} left; ring v{view.version} members {sorted(view.members)}")
            served = sum(cache.get(key) == key.upper() for key in keys)
            print(f"{served}/{len(keys)} keys still served (from their replicas where needed)")
            assert served == len(keys)
        for node in nodes:
            node.stop()


if __name__ == "__main__":
    main()

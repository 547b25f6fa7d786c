"""Run coord's benchmarks by name.

    python -m bench                 every registered benchmark, one after the other
    python -m bench NAME [ARGS...]  one benchmark, passing ARGS to it
    python -m bench --list          the registered names

A benchmark is a module in this package with ``main(argv: list[str] | None) -> int | None``.
Register a new one by adding a line to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "raft": ("bench.raft_core", "entries/s through the pure Raft core, 3 nodes in one process"),
    "storage": ("bench.storage", "WAL append and fsync rates, recovery time"),
    "kv": ("bench.loadgen", "Put/Range against coord and etcd clusters, failover time"),
    "ring": ("bench.ring", "consistent-hash lookups/s next to uhashring; balance and movement"),
    "scale": ("bench.scale", "a million keys beside etcd: leader changes, load rate, memory per key, count, recovery"),
    "leases": ("bench.leases", "many leases kept alive by few clients, coord next to etcd; an expiry storm"),
    "watches": ("bench.watches", "many watchers, coord next to etcd: memory per watch, put-to-event latency, none missed"),
    "locks": ("bench.locks", "lock acquire+release cycles/s against coord, etcd and PySyncObj"),
    "unary": ("bench.unary", "plain unary calls beside KV.Pipeline and etcd 3.5/3.4, server CPU per op"),
}


def run(name: str, argv: list[str]) -> int:
    module_name, _ = BENCHMARKS[name]
    module = importlib.import_module(module_name)
    return int(module.main(argv) or 0)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(__doc__)
        for name, (module, what) in BENCHMARKS.items():
            print(f"  {name:<10} {what} ({module})")
        return 0
    if argv:
        name, rest = argv[0], argv[1:]
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        return run(name, rest)
    status = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        status = max(status, run(name, []))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

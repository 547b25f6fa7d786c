"""Consistent-hash lookups: coord_client.hashring next to uhashring, in one run, plus the
balance and movement figures of ring.proto's default settings.

    python -m bench.ring [--members 10] [--keys 200000] [--runs 5] [--balance-keys 1000000]

Lookups per second: the same keys (str, as uhashring takes them; coord hashes their UTF-8
bytes) looked up one at a time on a ring of ``--members`` equal members, each ring built
once beforehand; every figure is the median of ``--runs`` runs, the rows interleaved so
that a busy machine slows them alike. Rows:

- coord FAST: ``HashRing(members)`` (BLAKE2b, 1024 points per member), ``get(key)``;
- coord KETAMA: ``HashRing(members, KETAMA)`` (libketama's 160 points per member);
- uhashring ketama: ``HashRing(nodes, hash_fn="ketama").get_node(key)``;
- uhashring default: ``HashRing(nodes).get_node(key)`` (MD5, 160 points per member);
- coord lookup(key, 3): three distinct members, for replicas.

Balance: 10 equal members, ``--balance-keys`` keys: the most loaded member against the
mean, and the standard deviation of the loads, for coord FAST (default) and KETAMA.
Movement: the share of keys that move when a member joins a ring of n, against 1/(n+1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from coord_client.hashring import FAST, KETAMA, HashRing


def _rate(fn: Callable[[str], object], keys: list[str]) -> float:
    start = time.perf_counter()
    for k in keys:
        fn(k)
    return len(keys) / (time.perf_counter() - start)


def lookups(members: int, nkeys: int, runs: int) -> list[tuple[str, float, str]]:
    ids = [f"10.0.0.{i}:11211" for i in range(1, members + 1)]
    keys = [f"user:{i}" for i in range(nkeys)]
    fast = HashRing([(m, 1) for m in ids])
    ketama = HashRing([(m, 1) for m in ids], KETAMA)
    rows: dict[str, Callable[[str], object]] = {
        "coord FAST get": fast.get,
        "coord KETAMA get": ketama.get,
        "coord FAST lookup(key, 3)": lambda k: fast.lookup(k, 3),
    }
    notes = {
        "coord FAST get": f"{len(fast)} points",
        "coord KETAMA get": f"{len(ketama)} points",
        "coord FAST lookup(key, 3)": "3 distinct members",
    }
    try:
        import uhashring  # type: ignore[import-untyped]

        nodes = {m: {"weight": 1} for m in ids}
        u_ketama = uhashring.HashRing(nodes=nodes, hash_fn="ketama")
        u_default = uhashring.HashRing(nodes=nodes)
        rows["uhashring ketama get_node"] = u_ketama.get_node
        rows["uhashring default get_node"] = u_default.get_node
        rows["uhashring default range(key, 3)"] = lambda k: list(u_default.range(k, 3))
        notes["uhashring ketama get_node"] = f"{len(u_ketama.runtime._keys)} points"
        notes["uhashring default get_node"] = f"{len(u_default.runtime._keys)} points"
        notes["uhashring default range(key, 3)"] = "3 distinct members"
    except ImportError:
        print("uhashring is not installed (pip install -e '.[dev]'): its rows are skipped")
    results: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(runs):
        for name, fn in rows.items():
            results[name].append(_rate(fn, keys))
    return [(name, statistics.median(r), notes[name]) for name, r in results.items()]


def balance(nkeys: int, mode: int) -> tuple[float, float, int]:
    ids = [f"member-{i}" for i in range(10)]
    ring = HashRing([(m, 1) for m in ids], mode)
    counts = dict.fromkeys(ids, 0)
    get = ring.get
    for i in range(nkeys):
        counts[get(b"key-%d" % i)] += 1
    mean = nkeys / len(ids)
    return max(counts.values()) / mean, statistics.pstdev(counts.values()) / mean, len(ring)


def movement(nkeys: int) -> list[tuple[int, float]]:
    keys = [f"k{i}".encode() for i in range(nkeys)]
    out = []
    for n in (1, 2, 4, 9, 19):
        ids = [f"node-{i}" for i in range(n)]
        before, after = HashRing([(m, 1) for m in ids]), HashRing([(m, 1) for m in [*ids, "newcomer"]])
        out.append((n, sum(before.get(k) != after.get(k) for k in keys) / nkeys))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ring", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--balance-keys", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    print(f"lookups/s, {args.members} equal members, {args.keys} keys, median of {args.runs} runs")
    rows = lookups(args.members, args.keys, args.runs)
    base = {n: r for n, r, _ in rows}
    for name, rate, note in rows:
        print(f"  {name:<34} {rate:>12,.0f} /s   ({note})")
    if "uhashring ketama get_node" in base:
        print(f"  coord KETAMA / uhashring ketama: {base['coord KETAMA get'] / base['uhashring ketama get_node']:.2f}x; "
              f"coord FAST / uhashring default: {base['coord FAST get'] / base['uhashring default get_node']:.2f}x")

    print(f"balance, 10 equal members, {args.balance_keys:,} keys")
    for label, mode in (("coord FAST (default)", FAST), ("coord KETAMA", KETAMA)):
        worst, sd, points = balance(args.balance_keys, mode)
        print(f"  {label:<22} max/mean {worst:.4f}  std dev {sd:.2%} of the mean  ({points} points)")

    print("keys moved when one member joins a ring of n (200,000 keys)")
    for n, moved in movement(200_000):
        print(f"  n={n:<3} moved {moved:.4f}   1/(n+1) = {1 / (n + 1):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

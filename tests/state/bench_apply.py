"""Apply rate of the state machine: entries per second for 100-byte puts.

    .venv/bin/python -m tests.state.bench_apply [N] [--distinct-keys K] [--client-ids]

Prints the median of three runs. Not a test: pytest collects only test_*.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2
from coord_server.state import StateMachine


def entries(n: int, distinct: int, client_ids: bool) -> list[bytes]:
    value = b"v" * 100
    out = []
    for i in range(n):
        cmd = command_pb2.Command(put=kv_pb2.PutRequest(key=b"key/%08d" % (i % distinct), value=value))
        if client_ids:
            cmd.client_id = "client-%d" % (i % 64)
            cmd.seq = i + 1
        out.append(cmd.SerializeToString())
    return out


def run(data: list[bytes], listener: bool) -> float:
    sm = StateMachine()
    if listener:
        sm.add_listener(lambda rev, events: None)
    start = time.perf_counter()
    apply = sm.apply
    for index, entry in enumerate(data, 1):
        apply(index, entry)
    return len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    parser.add_argument("--distinct-keys", type=int, default=10_000)
    parser.add_argument("--client-ids", action="store_true")
    parser.add_argument("--listener", action="store_true", help="register a no-op watch listener")
    args = parser.parse_args()
    data = entries(args.n, args.distinct_keys, args.client_ids)
    rates = [run(data, args.listener) for _ in range(3)]
    print(
        f"{args.n} puts of 100 bytes, {args.distinct_keys} distinct keys, "
        f"client ids {'on' if args.client_ids else 'off'}, listener {'on' if args.listener else 'off'}: "
        f"median {statistics.median(rates):,.0f} entries/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()

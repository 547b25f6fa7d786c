"""Speed of the pure Raft core: entries per second committed through a 3-node cluster.

    python -m bench raft [--seconds S] [--runs N] [--batches 1,64] [--entry-bytes 100]
                         [--profile]

Three RaftCores with MemoryStorage, a perfect in-process network and no I/O: the numbers
are the cost of the consensus logic alone (stepping, Ready/advance, log and progress
bookkeeping), an upper bound for what a node can commit whatever its disk and transport.

One round: the leader proposes a batch (``propose_batch`` of B entries of about 100
bytes), then every node's Ready is handled (persist into MemoryStorage, deliver messages,
apply committed entries, advance) until the cluster is quiet. Rounds repeat for
``--seconds``; the rate is entries committed on the leader per second of process CPU time
(so other load on the machine inflates it less than wall time would). Each batch size is
measured ``--runs`` times and the median is reported, with the spread. ``--profile``
prints a cProfile of one run at the largest batch size.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from collections import deque

from coord_server.raft import Config, MemoryStorage, Message, RaftCore, Role

TARGET = 200_000
"""Entries per second at batch 64 that the core is expected to sustain."""


class Cluster:
    """Three cores driven by the documented loop, with a perfect network."""

    def __init__(self, n_nodes: int = 3, seed: int = 1) -> None:
        rng = random.Random(seed)
        ids = list(range(1, n_nodes + 1))
        self.storages = {i: MemoryStorage() for i in ids}
        self.cores = {
            i: RaftCore(Config(id=i, max_inflight_msgs=4096, max_entries_per_msg=4096),
                        self.storages[i], random.Random(rng.getrandbits(64)))
            for i in ids
        }
        for core in self.cores.values():
            core.bootstrap(ids)
        self.applied = {i: 0 for i in ids}
        self.inbox: deque[Message] = deque()
        self.stabilize()
        self.cores[1].campaign()
        self.stabilize()
        self.leader = self.cores[1]
        if self.leader.role != Role.LEADER:
            raise RuntimeError("node 1 did not become leader")

    def stabilize(self) -> None:
        """Handle Readies and deliver messages until nothing is left to do."""
        cores = self.cores
        storages = self.storages
        applied = self.applied
        inbox = self.inbox
        while True:
            busy = False
            for node_id, core in cores.items():
                if not core.has_ready():
                    continue
                busy = True
                rd = core.ready()
                inbox.extend(rd.messages)
                storage = storages[node_id]
                if rd.snapshot is not None:
                    storage.apply_snapshot(rd.snapshot)
                if rd.entries:
                    storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                inbox.extend(rd.persisted_messages)
                if rd.committed_entries:
                    applied[node_id] += len(rd.committed_entries)
                core.advance(rd)
            while inbox:
                busy = True
                m = inbox.popleft()
                cores[m.to].step(m)
            if not busy:
                return

    def compact(self) -> None:
        """Keep the logs short, as a real node would after snapshotting."""
        for node_id, storage in self.storages.items():
            core = self.cores[node_id]
            keep_from = min(core.log.applied, storage.last_index()) - 1000
            if keep_from > storage.first_index():
                storage.compact(keep_from)


def run(batch: int, seconds: float, entry_bytes: int) -> tuple[float, int]:
    """Entries committed per CPU second at ``batch``; and how many were committed."""
    cluster = Cluster()
    leader = cluster.leader
    payloads = [bytes([i % 256]) * entry_bytes for i in range(batch)]
    start_commit = leader.log.committed
    start = time.process_time()
    deadline = start + seconds
    rounds = 0
    while True:
        leader.propose_batch(payloads)
        cluster.stabilize()
        rounds += 1
        if rounds % 64 == 0:
            cluster.compact()
            if time.process_time() >= deadline:
                break
    elapsed = time.process_time() - start
    committed = leader.log.committed - start_commit
    expected = rounds * batch
    if committed < expected:
        raise RuntimeError(f"only {committed} of {expected} proposed entries committed")
    return committed / elapsed, committed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench raft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per run (default 1)")
    parser.add_argument("--runs", type=int, default=5, help="runs per batch size; the median is reported")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--entry-bytes", type=int, default=100, help="bytes of data per entry")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    print(f"raft core: 3 nodes in one process, MemoryStorage, perfect network; "
          f"{args.entry_bytes}-byte entries; median of {args.runs} runs of {args.seconds:g} CPU s")
    print(f"{'batch':>6} {'entries/s':>12} {'min':>12} {'max':>12}")
    medians = {}
    for batch in batches:
        rates = [run(batch, args.seconds, args.entry_bytes)[0] for _ in range(args.runs)]
        medians[batch] = statistics.median(rates)
        print(f"{batch:>6} {medians[batch]:>12,.0f} {min(rates):>12,.0f} {max(rates):>12,.0f}")
    if 64 in medians:
        verdict = "meets" if medians[64] >= TARGET else "MISSES"
        print(f"target: {TARGET:,} entries/s at batch 64: {verdict} it")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(max(batches), args.seconds, args.entry_bytes)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A leader-elected worker: many copies run, one leads and does the work; when it stops
or dies, another takes over within a lease TTL.

    python examples/leader_worker.py                     # campaign, lead, repeat
    python examples/leader_worker.py --observe           # print every change of leader
    python examples/leader_worker.py --rounds 1 --lead-seconds 1   # lead once, briefly

While leading, the worker publishes its progress as the election's value (``proclaim``),
so observers see what the leader is doing. The leadership is bound to a lease kept alive
in the background; if the lease is lost (a long pause, a partition), ``term.lost`` is set
and the worker stops leading at once. Endpoints come from $COORD_ENDPOINTS.
"""

from __future__ import annotations

import argparse
import os
import socket
import time

from coord_client import Client, LeadershipLost

ME = f"{socket.gethostname()}:{os.getpid()}"


def lead(client: Client, election: str, ttl: int, lead_seconds: float) -> None:
    with client.campaign(election, f"{ME} starting", ttl=ttl) as term:
        print(f"{ME} leads {election} (token {term.token})", flush=True)
        deadline = time.monotonic() + lead_seconds if lead_seconds else float("inf")
        tick = 0
        # term.lost.wait returns True as soon as the leadership is lost.
        while time.monotonic() < deadline and not term.lost.wait(0.5):
            tick += 1
            term.proclaim(f"{ME} tick {tick}")  # the work, visible to observers
        print(f"{ME} steps down after {tick} ticks", flush=True)


def observe(client: Client, election: str, count: int) -> None:
    for seen, leader in enumerate(client.observe(election), 1):
        print(f"leader: {leader.value_str} (token {leader.token})" if leader else "no leader", flush=True)
        if count and seen >= count:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--election", default="workers/leader")
    parser.add_argument("--ttl", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=0, help="stop after leading this many times (default: never)")
    parser.add_argument("--lead-seconds", type=float, default=0, help="resign after this long (default: never)")
    parser.add_argument("--observe", action="store_true", help="only print the leader on every change")
    parser.add_argument("--count", type=int, default=0, help="with --observe: stop after this many states")
    args = parser.parse_args()

    with Client() as client:
        if args.observe:
            observe(client, args.election, args.count)
            return
        rounds = 0
        while not args.rounds or rounds < args.rounds:
            rounds += 1
            try:
                lead(client, args.election, args.ttl, args.lead_seconds)
            except LeadershipLost as lost:
                print(f"{ME} lost the leadership: {lost}", flush=True)


if __name__ == "__main__":
    main()

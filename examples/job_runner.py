"""A job runner that holds a lock: however many copies run, on however many machines, one
job runs at a time, and a copy that lost the lock (its lease expired while it was paused,
say) cannot overwrite the work of the one that holds it now.

    python examples/job_runner.py --job nightly-report            # runs forever
    python examples/job_runner.py --job nightly-report --runs 1   # once, then exit

Each run takes the lock ``jobs/<job>`` and does its steps. Every write it makes is a
transaction guarded by the lock's fencing token (``Compare.lock_token``): coord applies
it only while that token still holds the lock. ``held.check()`` between steps stops a run
whose lease was lost; leaving the ``with`` block after such a loss raises LockLost.
Endpoints come from $COORD_ENDPOINTS (default: `make cluster`'s).
"""

from __future__ import annotations

import argparse
import os
import socket
import time

from coord_client import Client, Compare, LockLost, Op
from coord_client.sync import Lock

ME = f"{socket.gethostname()}:{os.getpid()}"


def run_job(client: Client, held: Lock, job: str, steps: int, step_seconds: float) -> None:
    lock_name = f"jobs/{job}"
    for step in range(1, steps + 1):
        held.check()  # raises LockLost if the lease ended meanwhile
        time.sleep(step_seconds)  # the work of this step
        report = f"step {step}/{steps} by {ME} with token {held.fencing_token}"
        written = (
            client.txn()
            .when(Compare.lock_token(lock_name) == held.fencing_token)
            .then(Op.put(f"jobs/{job}/progress", report))
            .commit()
        )
        if not written.succeeded:  # someone else holds the lock now: our token is stale
            raise LockLost(f"token {held.fencing_token} no longer holds {lock_name}")
        print(report, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="nightly-report")
    parser.add_argument("--runs", type=int, default=0, help="stop after this many runs (default: never)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=0.2)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--ttl", type=int, default=10, help="lease TTL of the lock, seconds")
    args = parser.parse_args()

    with Client() as client:
        run = 0
        while not args.runs or run < args.runs:
            run += 1
            try:
                with client.lock(f"jobs/{args.job}", ttl=args.ttl) as held:
                    print(f"{ME} holds jobs/{args.job} (fencing token {held.fencing_token})", flush=True)
                    run_job(client, held, args.job, args.steps, args.step_seconds)
            except LockLost as lost:
                print(f"{ME} lost the lock, run abandoned: {lost}", flush=True)
            time.sleep(args.pause if not args.runs or run < args.runs else 0)


if __name__ == "__main__":
    main()

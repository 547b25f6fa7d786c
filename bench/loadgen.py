"""Load generator: the same Put / linearizable Range workload against coord and etcd, each
a 3-member cluster on loopback with fsync on, plus failover time under load.

    python -m bench.loadgen [--systems coord,etcd] [--seconds 5] [--put 1,16,64,256]
                            [--get 1,64] [--failover-runs 3] [--procs auto] [--rounds 1]
                            [--json FILE]

What one run does, per system (coord, then etcd when its binary is installed; otherwise it
says that etcd is skipped and why):

- put: at each concurrency C, C client loops spread over client *processes* (spawned, each
  with its own asyncio loop and one gRPC channel per member) put 100-byte values for
  ``--seconds`` after a warm-up; every loop starts on a different member (writes reaching a
  follower are forwarded, by coord as by etcd). Reports ops/s and p50/p99 latency.
- get: the same for linearizable Range of one key among 1,000 written beforehand.
- failover: 16 loops put; the leader is killed (SIGKILL) after a second of load; the time
  from the kill to the first write *sent after the kill* that succeeds is the failover
  time (and the time until the survivors agree on a new leader is shown beside it). The
  member is restarted, and this repeats ``--failover-runs`` times; the median is reported.

``--rounds N`` repeats all of it N times, each round on fresh clusters, and ends with the
medians over the rounds: each round's coord/etcd ratio (taken within the round, where both
systems met the same load from the rest of the machine) and whether coord's p99 was no
worse in it. One round on a shared 2-core machine moves by +-15%.

The client code is the same for both systems: requests are serialized once up front and
sent as bytes through grpc.aio (coord's KV and etcd's KV share etcd's field numbers, and
bench/etcd.py says how etcd's messages are obtained), responses are not parsed, a failed
attempt moves to the member named in ``coord-leader`` or else the next one, after 10 ms.
Two differences, stated in the report: coord's driver sends through KV.Pipeline, the path
coord_client uses (operations issued together share one stream message), unless
``--coord-path unary`` asks for one unary call per operation as etcd's driver makes; and,
as coord_client does (its _transport.py Rule 5), a process sends its puts to the leader
once a follower's put result has named it (reads stay where their loop started). etcd
has no such hint: its loops stay on their members and followers forward.

CPU: for every point, each server's and each client process's CPU time over the measured
window (utime+stime from /proc/PID/stat), in percent of one core. With 2 cores the clients
compete with the servers; the table shows how much they take.

Data and logs live in a fresh directory inside ``--dir`` (default: the current directory;
/tmp may be tmpfs, where fsync costs nothing and the numbers would mean nothing), removed
at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.processes import MemberProcesses, free_ports, percentile

VALUE_SIZE = 100
GET_KEYS = 1000
KEYS_PER_LOOP = 64
RETRY_PAUSE = 0.01
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- clusters under test ---------------------------------------------------------------


class SystemCluster(Protocol):
    system: str

    def start(self) -> None: ...
    def endpoints(self) -> list[str]: ...
    def pids(self) -> dict[str, int]: ...
    def leader(self) -> str | None: ...
    def wait_for_leader(self, timeout: float = 60) -> str: ...
    def kill(self, name: str) -> None: ...
    def restart(self, name: str) -> None: ...
    def stop(self) -> None: ...




class CoordCluster(MemberProcesses):
    """``size`` coord-server processes on free loopback ports, default settings (the
    numbers are for coord as shipped), data and logs under ``base_dir``."""

    system = "coord"

    def __init__(self, base_dir: Path, size: int = 3, options: tuple[str, ...] = ()) -> None:
        self.base_dir = Path(base_dir)
        self.names = [f"n{i + 1}" for i in range(size)]
        self.address = dict(zip(self.names, (f"127.0.0.1:{p}" for p in free_ports(size))))
        self.options = options
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.member_ids: dict[int, str] = {}

    def start_member(self, name: str) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{n}={a}" for n, a in self.address.items())
        args = [
            sys.executable, "-m", "coord_server.cli",
            "--name", name,
            "--data-dir", str(self.base_dir / name),
            "--listen", self.address[name],
            "--initial-cluster", initial,
            "--log-level", "warning",
            *self.options,
        ]
        with open(self.base_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self, timeout: float = 60) -> None:
        for name in self.names:
            self.start_member(name)
        self.wait_for_leader(timeout)

    def endpoints(self) -> list[str]:
        return [self.address[n] for n in self.names]

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def status(self, name: str, timeout: float = 1.0) -> Any:
        import grpc

        from coord.v1 import cluster_pb2, cluster_pb2_grpc

        with grpc.insecure_channel(self.address[name]) as channel:
            response = cluster_pb2_grpc.ClusterStub(channel).Status(cluster_pb2.ClusterStatusRequest(), timeout=timeout)
        self.member_ids[response.header.member_id] = name
        return response

    def leader(self) -> str | None:
        leaders = set()
        for name in self.pids():
            try:
                leaders.add(self.status(name).leader)
            except Exception:  # noqa: BLE001 - not answering: no agreement yet
                return None
        if len(leaders) != 1:
            return None
        return self.member_ids.get(leaders.pop())


# -- the client side (runs in worker processes) ----------------------------------------


COORD_PATH = {"path": "pipeline"}
"""How coord's driver sends operations: "pipeline" (KV.Pipeline, the path coord_client
uses), "unary" (one KV.Put/Range call per operation, as etcd's driver does) or
"etcd-api" (one etcdserverpb.KV call per operation: coord's etcd API, docs/etcd.md)."""
_COORD_SYSTEM_OF_PATH = {"unary": "coord-unary", "etcd-api": "coord-etcd"}


def _paths(system: str) -> tuple[str, str, str | None]:
    """(put method, range method, leader metadata key) of ``system``."""
    if system in ("coord", "coord-unary"):
        return "/coord.v1.KV/Put", "/coord.v1.KV/Range", "coord-leader"
    if system in ("etcd", "coord-etcd"):
        from bench import etcd

        return etcd.PUT, etcd.RANGE, None
    raise ValueError(f"unknown system {system!r}")


def _serialize_put(system: str, key: bytes, value: bytes) -> Any:
    if system == "coord":
        from coord.v1 import kv_pb2

        return kv_pb2.PutRequest(key=key, value=value)  # the pipeline takes messages
    if system == "coord-unary":
        from coord.v1 import kv_pb2

        return kv_pb2.PutRequest(key=key, value=value).SerializeToString()
    from bench import etcd

    data: bytes = etcd.PutRequest(key=key, value=value).SerializeToString()
    return data


def _serialize_range(system: str, key: bytes) -> Any:
    if system == "coord":
        from coord.v1 import kv_pb2

        return kv_pb2.RangeRequest(key=key)  # linearizable (the default)
    if system == "coord-unary":
        from coord.v1 import kv_pb2

        return kv_pb2.RangeRequest(key=key).SerializeToString()  # linearizable (the default)
    from bench import etcd

    data: bytes = etcd.RangeRequest(key=key).SerializeToString()
    return data


class Driver:
    """One process's connections to the cluster: one grpc.aio channel per member; requests
    and responses travel as bytes (serialized up front, never parsed)."""

    def __init__(self, system: str, endpoints: list[str], op_timeout: float) -> None:
        import grpc

        self.grpc = grpc
        put, range_, self.leader_key = _paths(system)
        self.endpoints = endpoints
        self.index_of = {e: i for i, e in enumerate(endpoints)}
        self.channels = [grpc.aio.insecure_channel(e) for e in endpoints]
        self.calls: dict[str, list[Any]] = {
            "put": [c.unary_unary(put) for c in self.channels],
            "get": [c.unary_unary(range_) for c in self.channels],
        }
        self.op_timeout = op_timeout
        self.pipes: list[Any] = []
        self.write_leader: int | None = None
        """coord: the member a follower's put result named, where puts then go."""
        if system == "coord":
            # coord_client's own path: one KV.Pipeline stream per member, operations issued
            # in one loop iteration travel together (coord_client/_pipeline.py).
            from coord.v1 import kv_pb2_grpc
            from coord_client._pipeline import PipelineStream

            self.pipes = [PipelineStream(kv_pb2_grpc.KVStub(c), self._learn_leader) for c in self.channels]

    def _learn_leader(self, address: str) -> None:
        self.write_leader = self.index_of.get(address)

    async def attempt(self, op: str, request: Any, index: int) -> tuple[bool, int, int, str]:
        """One RPC, to member ``index`` or (a coord put) to the leader once named: (ok,
        the member that was asked, member for the next attempt, error code)."""
        preferred = index
        if op == "put" and self.write_leader is not None:
            index = self.write_leader
        try:
            if self.pipes:
                await self.pipes[index].call("put" if op == "put" else "range", request, self.op_timeout)
            else:
                await self.calls[op][index](request, timeout=self.op_timeout)
            return True, index, preferred, ""
        except self.grpc.aio.AioRpcError as err:
            if index == self.write_leader:
                self.write_leader = None  # a follower names the next one
            following = None
            if self.leader_key:
                for k, v in err.trailing_metadata() or ():
                    if k == self.leader_key:
                        following = self.index_of.get(str(v))
            nxt = following if following is not None else (index + 1) % len(self.endpoints)
            return False, index, nxt, err.code().name

    async def close(self) -> None:
        for pipe in self.pipes:
            await pipe.close()
        for c in self.channels:
            await c.close()


@dataclass
class WorkerConfig:
    system: str
    endpoints: list[str]
    op: str  # "put" or "get"
    loops: int
    worker: int
    op_timeout: float
    record_attempts: bool  # failover: every attempt's (start, end, ok)
    seed: int


@dataclass
class WorkerResult:
    pid: int
    latencies: list[float] = field(default_factory=list)
    attempts: list[tuple[float, float, bool]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    per_endpoint: list[int] = field(default_factory=list)
    """Successful attempts per member (index in ``endpoints``)."""


def _worker_main(conn: multiprocessing.connection.Connection, cfg: WorkerConfig, kill_time: Any) -> None:
    try:
        asyncio.run(_worker(conn, cfg, kill_time))
    except KeyboardInterrupt:
        pass


async def _worker(conn: multiprocessing.connection.Connection, cfg: WorkerConfig, kill_time: Any) -> None:
    driver = Driver(cfg.system, cfg.endpoints, cfg.op_timeout)
    rng = random.Random(cfg.seed)
    value = bytes(rng.getrandbits(8) for _ in range(VALUE_SIZE))
    n = len(cfg.endpoints)
    if cfg.op == "put":
        requests = [
            [_serialize_put(cfg.system, f"bench/put/{cfg.worker}/{i}/{k}".encode(), value) for k in range(KEYS_PER_LOOP)]
            for i in range(cfg.loops)
        ]
    else:
        pool = [_serialize_range(cfg.system, f"bench/get/{k:04d}".encode()) for k in range(GET_KEYS)]
        requests = [pool for _ in range(cfg.loops)]
    # Connect every channel before the clock starts.
    for index in range(n):
        for _ in range(100):
            ok, _, _, _ = await driver.attempt(cfg.op, requests[0][0], index)
            if ok:
                break
            await asyncio.sleep(0.05)
    conn.send(("ready", os.getpid()))
    start, measure_from, measure_to, stop = conn.recv()
    result = WorkerResult(pid=os.getpid(), per_endpoint=[0] * n)
    errors: Counter[str] = Counter()

    async def loop(i: int) -> None:
        index = (cfg.worker + i) % n
        mine = requests[i]
        seq = rng.randrange(len(mine))
        end = stop
        while True:
            first = time.monotonic()
            if first >= end:
                return
            request = mine[seq % len(mine)]
            seq += 1
            while True:
                a0 = time.monotonic()
                ok, asked, index, code = await driver.attempt(cfg.op, request, index)
                a1 = time.monotonic()
                if cfg.record_attempts:
                    result.attempts.append((a0, a1, ok))
                    killed = kill_time.value
                    if ok and killed and a0 >= killed:
                        end = min(end, a1 + 1.0)  # writes are back: a second more, then stop
                if ok:
                    result.per_endpoint[asked] += 1
                    break
                errors[code] += 1
                if a1 >= end:
                    return
                await asyncio.sleep(RETRY_PAUSE)
            if measure_from <= a1 <= measure_to:
                result.latencies.append(a1 - first)

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    await asyncio.gather(*(loop(i) for i in range(cfg.loops)))
    result.errors = dict(errors)
    conn.send(asdict(result))
    await driver.close()


# -- the parent: points, CPU, failover ---------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (from /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_cpu_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and
    iowait), to tell how close to saturated the machine was."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _CLK_TCK


def auto_procs(loops: int) -> int:
    """Client processes for ``loops`` concurrent loops: enough that no client process runs
    near a full core at the rates seen here, few enough to leave the servers the CPU."""
    if loops <= 1:
        return 1
    return min(loops, 2 if loops <= 16 else 4)


class Workers:
    """Client processes for one point, with the same start/measure/stop times."""

    def __init__(self, cluster: SystemCluster, op: str, loops: int, procs: int, op_timeout: float, record_attempts: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.kill_time = ctx.RawValue("d", 0.0)
        shares = [loops // procs + (1 if i < loops % procs else 0) for i in range(procs)]
        self.conns: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for w, share in enumerate(s for s in shares if s):
            parent, child = ctx.Pipe()
            system = cluster.system
            if system == "coord":
                system = _COORD_SYSTEM_OF_PATH.get(COORD_PATH["path"], system)
            cfg = WorkerConfig(system, cluster.endpoints(), op, share, w, op_timeout, record_attempts, seed=w)
            p = ctx.Process(target=_worker_main, args=(child, cfg, self.kill_time), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(p)
        self.pids: list[int] = []
        for conn in self.conns:
            if not conn.poll(120):
                self.terminate()
                raise RuntimeError("a client process did not get ready within 120 s")
            _, pid = conn.recv()
            self.pids.append(pid)

    def go(self, start: float, measure_from: float, measure_to: float, stop: float) -> None:
        for conn in self.conns:
            conn.send((start, measure_from, measure_to, stop))

    def results(self, timeout: float) -> list[dict[str, Any]]:
        out = []
        for conn in self.conns:
            if not conn.poll(timeout):
                self.terminate()
                raise RuntimeError("a client process did not report")
            out.append(conn.recv())
        for p in self.processes:
            p.join(30)
        return out

    def terminate(self) -> None:
        for p in self.processes:
            if p.is_alive():
                p.kill()


@dataclass
class Point:
    system: str
    op: str
    concurrency: int
    procs: int
    seconds: float
    ops: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    per_endpoint: list[int]
    """Successful calls answered by each member, over the whole run of the point."""
    cpu: dict[str, float]
    """Percent of one core over the window: each server member, each client, the total."""




def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def run_point(cluster: SystemCluster, op: str, concurrency: int, args: argparse.Namespace) -> Point:
    procs = args.procs or auto_procs(concurrency)
    workers = Workers(cluster, op, concurrency, procs, args.op_timeout)
    try:
        start = time.monotonic() + 0.2
        measure_from = start + args.warmup
        measure_to = measure_from + args.seconds
        workers.go(start, measure_from, measure_to, measure_to)
        servers = cluster.pids()
        watched = {**servers, **{f"client{i + 1}": pid for i, pid in enumerate(workers.pids)}}
        _sleep_until(measure_from)
        before = {n: cpu_seconds(p) for n, p in watched.items()}
        machine_before = machine_cpu_seconds()
        _sleep_until(measure_to)
        after = {n: cpu_seconds(p) for n, p in watched.items()}
        machine = machine_cpu_seconds() - machine_before
        window = time.monotonic() - measure_from
        results = workers.results(timeout=args.op_timeout + 60)
    finally:
        workers.terminate()
    cpu = {
        n: round(100 * (after[n] - before[n]) / window, 1)  # type: ignore[operator]
        for n in watched
        if before.get(n) is not None and after.get(n) is not None
    }
    cpu["servers"] = round(sum(v for n, v in cpu.items() if n in servers), 1)
    cpu["clients"] = round(sum(v for n, v in cpu.items() if n.startswith("client")), 1)
    cpu["machine"] = round(100 * machine / window, 1)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: Counter[str] = Counter()
    per_endpoint = [0] * len(cluster.endpoints())
    for r in results:
        errors.update(r["errors"])
        per_endpoint = [a + b for a, b in zip(per_endpoint, r["per_endpoint"])]
    return Point(
        cluster.system, op, concurrency, len(workers.pids), args.seconds, len(latencies),
        round(len(latencies) / args.seconds, 1),
        round(1000 * percentile(latencies, 0.50), 2), round(1000 * percentile(latencies, 0.99), 2),
        dict(errors), per_endpoint, cpu,
    )


@dataclass
class Failover:
    system: str
    runs: list[dict[str, float | None]]
    """Per run: seconds from the kill to the first successful write sent after it
    (``resumed``), and to the survivors agreeing on a new leader (``elected``)."""

    @property
    def median_resumed(self) -> float | None:
        values = [r["resumed"] for r in self.runs if r["resumed"] is not None]
        return statistics.median(values) if values else None


def run_failover(cluster: SystemCluster, args: argparse.Namespace) -> Failover:
    runs: list[dict[str, float | None]] = []
    for _ in range(args.failover_runs):
        leader = cluster.wait_for_leader()
        workers = Workers(cluster, "put", args.failover_loops, auto_procs(args.failover_loops), args.op_timeout, record_attempts=True)
        try:
            start = time.monotonic() + 0.2
            kill_at = start + 1.0
            stop = kill_at + args.failover_window
            workers.go(start, start, stop, stop)
            _sleep_until(kill_at)
            killed = time.monotonic()
            workers.kill_time.value = killed
            cluster.kill(leader)
            elected = None
            while time.monotonic() < stop:
                new = cluster.leader()
                if new is not None and new != leader:
                    elected = time.monotonic() - killed
                    break
                time.sleep(0.01)
            results = workers.results(timeout=args.failover_window + args.op_timeout + 60)
        finally:
            workers.terminate()
        successes = [a1 for r in results for a0, a1, ok in r["attempts"] if ok and a0 >= killed]
        resumed = min(successes) - killed if successes else None
        runs.append({"resumed": None if resumed is None else round(resumed, 3), "elected": None if elected is None else round(elected, 3)})
        _log(f"  {cluster.system} failover: killed leader {leader}; new leader after "
             f"{_fmt_s(elected)}, writes resumed after {_fmt_s(resumed)}")
        cluster.restart(leader)
        time.sleep(0.5)  # let the restarted member catch up before the next kill
    return Failover(cluster.system, runs)


def populate(cluster: SystemCluster) -> None:
    """Write the keys the get workload reads."""

    async def go() -> None:
        driver = Driver(cluster.system, cluster.endpoints(), 10.0)
        value = b"g" * VALUE_SIZE
        index = 0
        sem = asyncio.Semaphore(32)

        async def put(k: int) -> None:
            nonlocal index
            request = _serialize_put(cluster.system, f"bench/get/{k:04d}".encode(), value)
            async with sem:
                for _ in range(100):
                    ok, _, index, _ = await driver.attempt("put", request, index)
                    if ok:
                        return
                    await asyncio.sleep(0.05)
                raise RuntimeError(f"{cluster.system}: could not write the keys to read")

        await asyncio.gather(*(put(k) for k in range(GET_KEYS)))
        await driver.close()

    asyncio.run(go())


# -- orchestration and report ------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()] if text else []


def bench_system(make: Any, base: Path, args: argparse.Namespace, parts: set[str]) -> dict[str, Any]:
    cluster: SystemCluster = make(base)
    out: dict[str, Any] = {"points": [], "failover": None}
    try:
        cluster.start()
        _log(f"{cluster.system}: 3 members up ({', '.join(cluster.endpoints())})")
        if "put" in parts:
            for c in _ints(args.put):
                p = run_point(cluster, "put", c, args)
                _log(f"  {_point_line(p)}")
                out["points"].append(p)
        if "get" in parts and _ints(args.get):
            populate(cluster)
            for c in _ints(args.get):
                p = run_point(cluster, "get", c, args)
                _log(f"  {_point_line(p)}")
                out["points"].append(p)
        if "failover" in parts and args.failover_runs > 0:
            out["failover"] = run_failover(cluster, args)
    finally:
        cluster.stop()
    return out


def _point_line(p: Point) -> str:
    errors = f", errors {p.errors}" if p.errors else ""
    errors += f", answered per member {p.per_endpoint}"
    cpu = " ".join(f"{n}={v:.0f}" for n, v in p.cpu.items())
    return (f"{p.system} {p.op} c={p.concurrency}: {p.ops_per_s:,.0f} ops/s, p50 {p.p50_ms:.1f} ms, "
            f"p99 {p.p99_ms:.1f} ms ({p.procs} client procs; cpu% {cpu}){errors}")


def report(results: dict[str, dict[str, Any]], etcd_note: str) -> str:
    lines = []
    coord = {(p.op, p.concurrency): p for p in results.get("coord", {}).get("points", [])}
    etcd = {(p.op, p.concurrency): p for p in results.get("etcd", {}).get("points", [])}
    keys = list(dict.fromkeys([*coord, *etcd]))
    head = f"{'workload':<10}{'conc':>5} | {'coord ops/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'etcd ops/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'coord/etcd':>10}"
    lines += [head, "-" * len(head)]
    for key in keys:
        c, e = coord.get(key), etcd.get(key)
        cc = f"{c.ops_per_s:>11,.0f} {c.p50_ms:>7.1f} {c.p99_ms:>7.1f}" if c else f"{'-':>11} {'-':>7} {'-':>7}"
        ee = f"{e.ops_per_s:>10,.0f} {e.p50_ms:>7.1f} {e.p99_ms:>7.1f}" if e else f"{'-':>10} {'-':>7} {'-':>7}"
        ratio = f"{c.ops_per_s / e.ops_per_s:>10.2f}" if c and e and e.ops_per_s else f"{'-':>10}"
        name = _workload_name(key[0])
        lines.append(f"{name:<10}{key[1]:>5} | {cc} | {ee} | {ratio}")
    for system in ("coord", "etcd"):
        f = results.get(system, {}).get("failover")
        if f is not None:
            each = ", ".join(f"{_fmt_s(r['resumed'])} (leader {_fmt_s(r['elected'])})" for r in f.runs)
            lines.append(f"failover {system}: median {_fmt_s(f.median_resumed)} until writes resumed; runs: {each}")
    lines.append("")
    lines.append("CPU, % of one core over each measured window (servers by member, then clients):")
    for system, points in (("coord", coord), ("etcd", etcd)):
        for (op, c), p in points.items():
            members = " ".join(f"{n}={v:.0f}" for n, v in p.cpu.items() if not n.startswith("client") and n not in ("servers", "clients", "machine"))
            lines.append(
                f"  {system:<5} {op:<4} c={c:<4} {members} | servers={p.cpu['servers']:.0f} "
                f"clients={p.cpu['clients']:.0f} ({p.procs} procs) | machine={p.cpu['machine']:.0f} of {100 * (os.cpu_count() or 1)}, "
                f"other processes={max(0.0, p.cpu['machine'] - p.cpu['servers'] - p.cpu['clients']):.0f}"
            )
    lines.append("")
    lines.append(f"coord client path: {COORD_PATH['path']} ({'KV.Pipeline, as coord_client sends' if COORD_PATH['path'] == 'pipeline' else 'one unary call per operation'}); "
                 "puts go to the leader once a follower names it, as coord_client's do")
    if etcd_note:
        lines.append(etcd_note)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="coord,etcd", help="coord, etcd or both (default: coord,etcd; etcd only if installed)")
    parser.add_argument("--parts", default="put,get,failover", help="which of put, get, failover to run (default: all)")
    parser.add_argument("--put", default="1,16,64,256", help="Put concurrencies (default: 1,16,64,256)")
    parser.add_argument("--get", default="1,64", help="linearizable Range concurrencies (default: 1,64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point (default: 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default: 1)")
    parser.add_argument("--procs", type=int, default=0, help="client processes per point (default: auto)")
    parser.add_argument("--op-timeout", type=float, default=2.0, help="deadline of one attempt, seconds (default: 2)")
    parser.add_argument("--failover-runs", type=int, default=3, help="leader kills per system (default: 3)")
    parser.add_argument("--failover-loops", type=int, default=16, help="concurrent writers during failover (default: 16)")
    parser.add_argument("--failover-window", type=float, default=15.0, help="give up on a failover after this many seconds")
    parser.add_argument("--dir", default=".", help="the members' data and logs go to a new directory in DIR (default: .)")
    parser.add_argument("--keep", action="store_true", help="keep that directory (logs, data) instead of removing it")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole comparison this many times and add medians over the rounds (default: 1)")
    parser.add_argument("--json", help="also write the results to this file (a list of rounds with --rounds > 1)")
    parser.add_argument(
        "--coord-path", choices=("pipeline", "unary", "etcd-api"), default="pipeline",
        help="coord's client path: KV.Pipeline as coord_client sends it (default), one unary call per op, "
        "or one call per op through coord's etcd API",
    )
    return parser


def run_round(systems: list[str], args: argparse.Namespace, parts: set[str]) -> dict[str, dict[str, Any]]:
    """Every system once, each on a fresh cluster in a new directory inside ``--dir``."""
    base = Path(tempfile.mkdtemp(prefix="coord-bench-kv-", dir=args.dir))
    results: dict[str, dict[str, Any]] = {}
    try:
        for system in systems:
            if system == "coord":
                results["coord"] = bench_system(lambda d: CoordCluster(d / "coord"), base, args, parts)
            elif system == "etcd":
                from bench.etcd import EtcdCluster

                results["etcd"] = bench_system(lambda d: EtcdCluster(d / "etcd"), base, args, parts)
            else:
                raise SystemExit(f"unknown system {system!r} (coord, etcd)")
    finally:
        if args.keep:
            _log(f"data and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return results


def summarize_rounds(rounds: list[dict[str, dict[str, Any]]]) -> str:
    """Medians over rounds, and each round's coord/etcd ratio and p99s: a ratio is taken
    within one round, where both systems met the same machine load."""
    keys = list(dict.fromkeys((p.op, p.concurrency) for r in rounds for s in r.values() for p in s["points"]))
    lines = [f"Medians over {len(rounds)} rounds (each round runs coord, then etcd):"]
    for op, conc in keys:
        def points(system: str) -> list[Point | None]:
            return [next((p for p in r.get(system, {}).get("points", []) if (p.op, p.concurrency) == (op, conc)), None)
                    for r in rounds]

        coord, etcd = points("coord"), points("etcd")
        name = _workload_name(op)
        line = f"  {name:<10}{conc:>5} | coord {_median_of([p.ops_per_s for p in coord if p]):,.0f} ops/s"
        pairs = [(c, e) for c, e in zip(coord, etcd) if c and e and e.ops_per_s]
        if pairs:
            ratios = [c.ops_per_s / e.ops_per_s for c, e in pairs]
            no_worse = sum(1 for c, e in pairs if c.p99_ms <= e.p99_ms)
            line += (f", etcd {_median_of([e.ops_per_s for _, e in pairs]):,.0f} ops/s | coord/etcd median "
                     f"{_median_of(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) | p99 ms coord/etcd "
                     f"{', '.join(f'{c.p99_ms:.1f}/{e.p99_ms:.1f}' for c, e in pairs)}: no worse in {no_worse} of {len(pairs)}")
        lines.append(line)
    for system in ("coord", "etcd"):
        medians = [r[system]["failover"].median_resumed for r in rounds if r.get(system, {}).get("failover")]
        medians = [m for m in medians if m is not None]
        if medians:
            lines.append(f"  failover {system}: median of the rounds' medians {_fmt_s(_median_of(medians))} "
                         f"({', '.join(_fmt_s(m) for m in medians)})")
    return "\n".join(lines)


def _workload_name(op: str) -> str:
    return "put" if op == "put" else "get (lin)"


def _median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None, parts: set[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    COORD_PATH["path"] = args.coord_path
    parts = parts or {p.strip() for p in args.parts.split(",") if p.strip()}
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    etcd_note = ""
    if "etcd" in systems:
        from bench import etcd

        ok, version = etcd.available()
        if ok:
            etcd_note = f"etcd: {version} (heartbeat 100 ms, election 1000 ms: its defaults)"
        else:
            etcd_note = f"etcd comparison SKIPPED: {version}"
            systems.remove("etcd")
            _log(etcd_note)
    rounds = []
    for number in range(1, args.rounds + 1):
        if args.rounds > 1:
            _log(f"round {number} of {args.rounds}")
        rounds.append(run_round(systems, args, parts))
        print(report(rounds[-1], etcd_note), flush=True)
    if args.rounds > 1:
        print()
        print(summarize_rounds(rounds))
    if args.json:
        payload = [
            {
                s: {
                    "points": [asdict(p) for p in r["points"]],
                    "failover": None if r["failover"] is None else {"runs": r["failover"].runs, "median_resumed": r["failover"].median_resumed},
                }
                for s, r in results.items()
            }
            for results in rounds
        ]
        Path(args.json).write_text(json.dumps(payload[0] if args.rounds == 1 else payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

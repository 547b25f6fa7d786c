"""A local coord cluster in the background: what `make cluster` and its friends run.

    tools/cluster.py [--dir DIR] start [--ports "7001 7002 7003"] [--timeout S] [--tls [--certs CERTS]
                                       [--peer-ports "7101 7102 7103"]] [--auth]
    tools/cluster.py [--dir DIR] status
    tools/cluster.py [--dir DIR] stop [--timeout S]
    tools/cluster.py [--dir DIR] kill NODE
    tools/cluster.py [--dir DIR] restart NODE
    tools/cluster.py [--dir DIR] logs [NODE] [--lines N]
    tools/cluster.py [--dir DIR] clean

Everything lives under DIR (default ``.cluster``): ``cluster.json`` (the members and the
arguments each was started with), and per member ``NAME/`` (data), ``NAME.pid`` and
``NAME.log`` (appended to across restarts). Members are named n1, n2, ... and listen on
127.0.0.1 at the given ports (default 7001-7003), one per port.

With ``--tls`` (``make cluster TLS=1``) each member serves clients with TLS on its port
(client certificates required) and peers with mutual TLS on a second port (client port +
100), with the certificates of CERTS (default ``DIR/certs``; made by tools/certs.py when
missing). ``status`` and the other commands read that choice from ``cluster.json``.
Each member's HTTP listener (etcd's JSON gateway, Connect, the dashboard) is on its client
port + 1000: HTTPS with TLS, with the same certificate and client certificates required.

With ``--auth`` (``make cluster AUTH=1``) authentication is on: ``DIR/auth.toml`` holds
one admin user, ``root``, whose token is in ``DIR/root-token``; ``DIR/peer-secret`` is the
cluster's peer secret (both mode 600, made once and kept). The tools here use the token.

Rules:

1. Signals go only to pids recorded in DIR whose command line is that member's
   coord-server; a stale pid file (the process is gone, or the pid was reused) is ignored.
2. ``start`` while members run changes nothing: it says so, shows the status and exits 0.
   With a stopped cluster's data in DIR it starts those members again on their ports.
3. ``start`` returns once every member agrees on a leader, or fails (exit 1) with each
   member's log tail and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORTS = (7001, 7002, 7003)
HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
PEER_PORT_OFFSET = 100
"""With TLS, a member's peer port is its client port + this, unless --peer-ports names them."""
HTTP_PORT_OFFSET = 1000
"""Each member serves HTTP (etcd's JSON gateway, Connect, the dashboard) on its client
port + this; with TLS, HTTPS with the client listener's certificate and client CA."""
AUTH_FILE, TOKEN_FILE, PEER_SECRET_FILE = "auth.toml", "root-token", "peer-secret"
"""With --auth, in DIR: the users (one admin), its token, the peer secret."""


def first_command(endpoints: list[str]) -> str:
    """What `make cluster` suggests trying first: a coordctl line, after exporting
    COORD_ENDPOINTS when the ports are not coordctl's defaults."""
    ctl = ".venv/bin/coordctl"
    line = f"{ctl} put hello world && {ctl} get hello"
    if endpoints != [f"{HOST}:{port}" for port in DEFAULT_PORTS]:
        line = f"export COORD_ENDPOINTS={','.join(endpoints)}\n  {line}"
    return line


def tls_environment(certs: Path) -> str:
    """The shell line that points coordctl at a TLS cluster's CA and client certificate."""
    return f"export COORD_CACERT={certs / 'ca.pem'} COORD_CERT={certs / 'client.pem'} COORD_KEY={certs / 'client-key.pem'}"


def etcd_commands(endpoints: list[str], http_address: str, certs: Path | None) -> list[str]:
    """An etcdctl put and a curl to etcd's JSON gateway, with the client certificate of
    a TLS cluster."""
    if certs is None:
        return [
            f"etcdctl --endpoints {','.join(endpoints)} put foo bar",
            f"curl -s http://{http_address}/v3/kv/range -d '{{\"key\": \"Zm9v\"}}'",
        ]
    ca, cert, key = certs / "ca.pem", certs / "client.pem", certs / "client-key.pem"
    return [
        f"etcdctl --endpoints {','.join(endpoints)} --cacert {ca} --cert {cert} --key {key} put foo bar",
        f"curl -s --cacert {ca} --cert {cert} --key {key} https://{http_address}/v3/kv/range -d '{{\"key\": \"Zm9v\"}}'",
    ]


class ClusterError(Exception):
    """A command cannot be carried out; the message says why and what to do."""


@dataclass
class Member:
    name: str
    address: str
    base: Path
    peer_address: str = ""
    """With TLS, the address of the member's separate peer listener."""
    http_address: str = ""
    """The address of the member's HTTP listener (etcd's JSON gateway; HTTPS with TLS)."""

    @property
    def data_dir(self) -> Path:
        return self.base / self.name

    @property
    def pid_file(self) -> Path:
        return self.base / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.base / f"{self.name}.log"

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @property
    def ports(self) -> list[int]:
        """Every port this member listens on (the peer port too, with TLS)."""
        extra = [a for a in (self.peer_address, self.http_address) if a]
        return [self.port] + [int(a.rpartition(":")[2]) for a in extra]


class LocalCluster:
    def __init__(self, base: Path) -> None:
        self.base = base.resolve()
        self.members: list[Member] = []
        self.args: dict[str, list[str]] = {}
        self.certs: Path | None = None
        """With TLS, the directory of ca.pem, the members' and the client's certificates."""
        self._credentials: Any = None
        self.auth = False
        """With --auth: calls carry the root token of DIR/root-token."""
        state = self.base / STATE_FILE
        if state.exists():
            data = json.loads(state.read_text())
            for m in data["members"]:
                self.members.append(
                    Member(m["name"], m["address"], self.base, m.get("peer_address", ""), m.get("http_address", ""))
                )
                self.args[m["name"]] = m["args"]
            if data.get("certs"):
                self.certs = Path(data["certs"])
            self.auth = bool(data.get("auth"))

    # -- definition -------------------------------------------------------------------

    def define(
        self, ports: list[int], certs: Path | None = None, auth: bool = False, peer_ports: list[int] | None = None
    ) -> None:
        """Record a new cluster with one member per port (no data yet); with ``certs``,
        a TLS cluster using the certificates there (made now if missing), its peers on
        ``peer_ports`` (default: each client port + PEER_PORT_OFFSET); with ``auth``,
        authentication on (an admin user and the peer secret, made now if missing)."""
        peers = peer_ports or [port + PEER_PORT_OFFSET for port in ports]
        self.members = [
            Member(
                f"n{i + 1}", f"{HOST}:{port}", self.base, f"{HOST}:{peers[i]}" if certs else "",
                f"{HOST}:{port + HTTP_PORT_OFFSET}",
            )
            for i, port in enumerate(ports)
        ]
        self.certs = certs.resolve() if certs is not None else None
        initial = ",".join(f"{m.name}={m.peer_address or m.address}" for m in self.members)
        clients = ",".join(f"{m.name}={m.address}" for m in self.members)
        if self.certs is not None:
            self._ensure_certs()
        self.base.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        if auth:
            self._ensure_auth()
        self.args = {}
        for m in self.members:
            args = ["--name", m.name, "--data-dir", str(m.data_dir), "--listen", m.address, "--initial-cluster", initial]
            if self.certs is not None:
                args += self._tls_args(m, clients)
            if auth:
                args += ["--auth-file", str(self.base / AUTH_FILE), "--peer-secret-file", str(self.base / PEER_SECRET_FILE)]
            if m.http_address:
                args += ["--http-listen", m.http_address]
            self.args[m.name] = args
        self.base.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "members": [
                {
                    "name": m.name, "address": m.address, "peer_address": m.peer_address,
                    "http_address": m.http_address, "args": self.args[m.name],
                }
                for m in self.members
            ],
            "certs": str(self.certs) if self.certs is not None else "",
            "auth": auth,
        }
        tmp = self.base / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(self.base / STATE_FILE)

    def _ensure_auth(self) -> None:
        """The admin user's token, the auth file naming its digest, and the peer secret."""
        import hashlib
        import secrets

        def private(name: str, text: str) -> None:
            path = self.base / name
            if not path.exists():
                path.touch(mode=0o600)
                path.write_text(text)
            path.chmod(0o600)

        private(TOKEN_FILE, secrets.token_hex(24) + "\n")
        digest = hashlib.sha256(self.token().encode()).hexdigest()
        private(AUTH_FILE, f'[roles.admin]\nadmin = true\n\n[users.root]\ntoken_sha256 = "{digest}"\nroles = ["admin"]\n')
        private(PEER_SECRET_FILE, secrets.token_hex(32) + "\n")

    def token(self) -> str:
        return (self.base / TOKEN_FILE).read_text().strip()

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata of the tools' own calls (the root token with --auth)."""
        return (("authorization", f"Bearer {self.token()}"),) if self.auth else ()

    def _ensure_certs(self) -> None:
        """Make the CA and the members' and client's certificates if any is missing."""
        assert self.certs is not None
        names = [m.name for m in self.members]
        wanted = ("ca.pem", "ca-key.pem", "client.pem", *(f"{n}.pem" for n in names))
        if all((self.certs / n).exists() for n in wanted):
            return
        from certs import CertError, make_certs  # tools/certs.py, next to this file

        try:
            make_certs(self.certs, names)
        except CertError as err:
            raise ClusterError(str(err)) from None

    def _tls_args(self, m: Member, clients: str) -> list[str]:
        """coord-server flags of a TLS member: its own certificate for both listeners,
        client certificates required, the same CA for clients and peers."""
        assert self.certs is not None
        certs = self.certs
        cert, key, ca = str(certs / f"{m.name}.pem"), str(certs / f"{m.name}-key.pem"), str(certs / "ca.pem")
        return [
            "--peer-listen", m.peer_address, "--initial-cluster-clients", clients,
            "--cert-file", cert, "--key-file", key, "--client-ca-file", ca,
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-ca-file", ca,
        ]

    @property
    def defined(self) -> bool:
        return bool(self.members)

    def channel(self, address: str) -> Any:
        """A grpc channel to a member's client port (TLS with the client certificate when
        the cluster is a TLS one)."""
        import grpc

        if self.certs is None:
            return grpc.insecure_channel(address)
        if self._credentials is None:  # read once: status polls open channels often
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=(self.certs / "ca.pem").read_bytes(),
                private_key=(self.certs / "client-key.pem").read_bytes(),
                certificate_chain=(self.certs / "client.pem").read_bytes(),
            )
        return grpc.secure_channel(address, self._credentials)

    def member(self, name: str | None) -> Member:
        if not self.defined:
            raise ClusterError(f"no cluster in {self.base}; start one with `make cluster`")
        names = [m.name for m in self.members]
        if not name:
            raise ClusterError(f"name a member: NODE=<{'|'.join(names)}>")
        for m in self.members:
            if m.name == name:
                return m
        raise ClusterError(f"no member {name!r}; the members are {', '.join(names)}")

    # -- processes ----------------------------------------------------------------------

    def pid(self, member: Member) -> int | None:
        """The pid of ``member``'s running coord-server, or None."""
        try:
            pid = int(member.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_member_process(pid, member) else None

    def running(self) -> dict[str, int]:
        return {m.name: pid for m in self.members if (pid := self.pid(m)) is not None}

    def spawn(self, member: Member) -> int:
        member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(member.log_file, "ab") as log:
            log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} tools/cluster.py: starting {member.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "coord_server.cli", *self.args[member.name]],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this script and the terminal's Ctrl-C
            )
        member.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def signal_and_wait(self, member: Member, pid: int, sig: int, timeout: float) -> bool:
        """Send ``sig`` (0: none) to ``pid`` and wait until it is gone; True if it is."""
        try:
            if sig:
                os.kill(pid, sig)
            if sig == signal.SIGTERM:
                os.kill(pid, signal.SIGCONT)  # a paused (SIGSTOP) member must run to exit
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return not _alive(pid)

    def stop_member(self, member: Member, timeout: float) -> str:
        pid = self.pid(member)
        if pid is None:
            member.pid_file.unlink(missing_ok=True)
            return "not running"
        if self.signal_and_wait(member, pid, signal.SIGTERM, timeout):
            how = "stopped"
        elif self.signal_and_wait(member, pid, signal.SIGKILL, 10):
            how = f"killed (did not exit within {timeout:g}s of SIGTERM)"
        else:
            raise ClusterError(f"{member.name} (pid {pid}) survives SIGKILL")
        member.pid_file.unlink(missing_ok=True)
        return f"{how} (pid {pid})"

    # -- status -------------------------------------------------------------------------

    def statuses(self, timeout: float = 1.0) -> dict[str, Any]:
        """name -> ClusterStatusResponse, or a short string saying why there is none."""
        import grpc

        from coord.v1 import cluster_pb2, cluster_pb2_grpc

        out: dict[str, Any] = {}
        self.names_by_id: dict[int, str] = {}
        running = self.running()
        for m in self.members:
            if m.name not in running:
                out[m.name] = "down"
                continue
            if _process_state(running[m.name]) == "T":
                out[m.name] = "paused"
                continue
            with self.channel(m.address) as channel:
                stub = cluster_pb2_grpc.ClusterStub(channel)
                try:
                    metadata = self.metadata()
                    out[m.name] = stub.Status(cluster_pb2.ClusterStatusRequest(), timeout=timeout, metadata=metadata)
                    if not self.names_by_id:  # names of all members, down ones included
                        listing = stub.MemberList(cluster_pb2.ClusterMemberListRequest(), timeout=timeout, metadata=metadata)
                        self.names_by_id = {member.id: member.name for member in listing.members}
                except grpc.RpcError as err:
                    out[m.name] = f"no answer ({err.code().name})"
        for name, status in out.items():
            if not isinstance(status, str):
                self.names_by_id.setdefault(status.header.member_id, name)
        return out

    def leader_of(self, statuses: dict[str, Any]) -> str | None:
        """The member every answering member names as leader (and which says it leads)."""
        from coord.v1 import cluster_pb2

        answers = {n: s for n, s in statuses.items() if not isinstance(s, str)}
        if not answers or any(isinstance(s, str) and s != "down" for s in statuses.values()):
            return None
        ids = {s.header.member_id: n for n, s in answers.items()}
        leaders = {s.leader for s in answers.values()}
        if len(leaders) != 1:
            return None
        name = ids.get(leaders.pop())
        if name is None or answers[name].role != cluster_pb2.RAFT_ROLE_LEADER:
            return None
        return name

    def table(self, statuses: dict[str, Any]) -> str:
        from coord.v1 import cluster_pb2

        from coord_client.cli import health_of, human_bytes
        from coord_client.cli import table as format_table

        names = getattr(self, "names_by_id", {})
        leader_commit = next(
            (s.commit_index for s in statuses.values() if not isinstance(s, str) and s.leader == s.header.member_id), None
        )
        rows = [("NAME", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "LOG", "SNAPSHOT", "HEALTH")]
        for m in self.members:
            s = statuses.get(m.name, "down")
            if isinstance(s, str):
                rows.append((m.name, m.address, s, *["-"] * 8))
                continue
            role = cluster_pb2.RaftRole.Name(s.role).removeprefix("RAFT_ROLE_").lower().replace("_", "-")
            if s.is_learner:
                role += " (learner)"
            leader = names.get(s.leader, f"{s.leader:#x}") if s.leader else "none"
            health = health_of(s, leader_commit)  # coordctl status's rule: same words, same limit
            rows.append((
                m.name, m.address, role, str(s.header.raft_term), leader, str(s.commit_index), str(s.applied_index),
                str(max(0, s.commit_index - s.applied_index)), f"{s.log_entries}/{human_bytes(s.log_size_bytes)}",
                f"{s.snapshot_index}/{human_bytes(s.snapshot_size_bytes)}", health,
            ))
        return format_table(rows)

    def wait_for_leader(self, timeout: float, started: dict[str, int]) -> str:
        deadline = time.monotonic() + timeout
        statuses: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for name, pid in started.items():
                if not _alive(pid):
                    raise ClusterError(f"{name} exited during start-up\n{self.log_tails([name])}")
            statuses = self.statuses()
            leader = self.leader_of(statuses)
            if leader is not None and all(not isinstance(statuses[n], str) for n in started):
                return leader
            time.sleep(0.1)
        raise ClusterError(
            f"no leader that every member agrees on within {timeout:g}s\n{self.table(statuses)}\n{self.log_tails()}"
        )

    def log_tails(self, names: list[str] | None = None, lines: int = 20) -> str:
        out = []
        for m in self.members:
            if names is not None and m.name not in names:
                continue
            out.append(f"==> {m.log_file} <==")
            out.append(_tail(m.log_file, lines))
        return "\n".join(out)


# -- commands -------------------------------------------------------------------------


def cmd_start(cluster: LocalCluster, args: argparse.Namespace) -> int:
    ports = _parse_ports(args.ports) if args.ports else None
    running = cluster.running()
    if running:
        recorded = [m.port for m in cluster.members]
        note = "" if ports in (None, recorded) else f" (on ports {' '.join(map(str, recorded))}, not {' '.join(map(str, ports))})"
        print(f"A cluster is already running in {cluster.base}{note}; leaving it as it is.")
        print(cluster.table(cluster.statuses()))
        down = [m.name for m in cluster.members if m.name not in running]
        if down:
            print(f"Stopped: {', '.join(down)}; start one with `make cluster-restart NODE={down[0]}`.")
        print("Stop it with `make cluster-stop`.")
        return 0
    has_data = cluster.defined and any(m.data_dir.exists() for m in cluster.members)
    if has_data:
        recorded = [m.port for m in cluster.members]
        if ports is not None and ports != recorded:
            raise ClusterError(
                f"{cluster.base} holds a stopped cluster on ports {' '.join(map(str, recorded))}; "
                f"start it on those ports (omit PORTS), or remove it with `make cluster-clean` first"
            )
        if args.auth != cluster.auth:
            raise ClusterError(
                f"{cluster.base} holds a stopped cluster {'with' if cluster.auth else 'without'} auth; start it "
                f"{'with' if cluster.auth else 'without'} AUTH=1, or remove it with `make cluster-clean` first"
            )
        if args.tls != (cluster.certs is not None):
            raise ClusterError(
                f"{cluster.base} holds a stopped cluster {'with' if cluster.certs else 'without'} TLS; start it "
                f"{'with' if cluster.certs else 'without'} TLS=1, or remove it with `make cluster-clean` first"
            )
        print(f"Starting the stopped cluster in {cluster.base} again (its data is kept).")
    else:
        certs = (Path(args.certs) if args.certs else cluster.base / "certs") if args.tls else None
        client_ports = ports or list(DEFAULT_PORTS)
        peer_ports = _parse_ports(args.peer_ports, "PEER_PORTS") if args.peer_ports else None
        if peer_ports is not None:
            if certs is None:
                raise ClusterError("PEER_PORTS applies to a TLS cluster (TLS=1): without TLS peers share the client port")
            if len(peer_ports) != len(client_ports) or set(peer_ports) & set(client_ports):
                raise ClusterError(f"PEER_PORTS needs one port per member ({len(client_ports)}), none of them a client port")
        for port in peer_ports or ([p + PEER_PORT_OFFSET for p in client_ports] if certs is not None else []):
            if not _port_free(port):
                raise ClusterError(f"peer port {port} is in use by another process; choose others with "
                                   f"PEER_PORTS=\"...\" (default: each client port + {PEER_PORT_OFFSET})")
        cluster.define(client_ports, certs, auth=args.auth, peer_ports=peer_ports)
    for m in cluster.members:
        for port in m.ports:
            if not _port_free(port):
                raise ClusterError(f"port {port} ({m.name}) is in use by another process; choose others with PORTS=\"...\"")
    started = {m.name: cluster.spawn(m) for m in cluster.members}
    try:
        leader = cluster.wait_for_leader(args.timeout, started)
    except ClusterError:
        for m in cluster.members:
            cluster.stop_member(m, timeout=5)
        raise
    endpoints = [m.address for m in cluster.members]
    print(f"coord cluster of {len(endpoints)} is up in {cluster.base}; leader: {leader}.")
    print(cluster.table(cluster.statuses()))
    print()
    print(f"Endpoints: {','.join(endpoints)}")
    print("Try:")
    if cluster.certs is not None:
        print(f"  {tls_environment(cluster.certs)}")
    if cluster.auth:
        print(f"  export COORD_TOKEN=$(cat {cluster.base / TOKEN_FILE})   # user root (admin); docs/security.md")
    print(f"  {first_command(endpoints)}")
    if cluster.members[0].http_address:
        # The same store through etcd's v3 API and its JSON gateway (docs/etcd.md).
        for line in etcd_commands(endpoints, cluster.members[0].http_address, cluster.certs):
            print(f"  {line}")
    print("  make cluster-status | cluster-logs | cluster-kill NODE=n2 | cluster-restart NODE=n2 | cluster-stop")
    return 0


def cmd_status(cluster: LocalCluster, args: argparse.Namespace) -> int:
    if not cluster.defined:
        print(f"No cluster in {cluster.base}; start one with `make cluster`.")
        return 1
    statuses = cluster.statuses()
    print(cluster.table(statuses))
    if not cluster.running():
        print("No member is running; `make cluster` starts them again.")
        return 1
    return 0


def cmd_stop(cluster: LocalCluster, args: argparse.Namespace, keep_note: bool = True) -> int:
    if not cluster.defined:
        print(f"No cluster in {cluster.base}.")
        return 0
    running = cluster.running()
    # SIGTERM every member first, so they shut down side by side.
    for pid in running.values():
        try:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a paused (SIGSTOP) member must run to exit
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + args.timeout
    for m in cluster.members:
        member_pid = running.get(m.name)
        if member_pid is None:
            print(f"{m.name}: not running")
            m.pid_file.unlink(missing_ok=True)
            continue
        pid = member_pid
        if cluster.signal_and_wait(m, pid, 0, max(0.0, deadline - time.monotonic())):
            print(f"{m.name}: stopped (pid {pid})")
        elif cluster.signal_and_wait(m, pid, signal.SIGKILL, 10):
            print(f"{m.name}: killed (pid {pid}; still running {args.timeout:g}s after SIGTERM)")
        else:
            raise ClusterError(f"{m.name} (pid {pid}) survives SIGKILL")
        m.pid_file.unlink(missing_ok=True)
    if keep_note:
        print(f"Data and logs are kept in {cluster.base}; `make cluster` starts it again, `make cluster-clean` removes it.")
    return 0


def cmd_kill(cluster: LocalCluster, args: argparse.Namespace) -> int:
    m = cluster.member(args.node)
    pid = cluster.pid(m)
    if pid is None:
        print(f"{m.name} is not running.")
        return 1
    cluster.signal_and_wait(m, pid, signal.SIGKILL, 10)
    m.pid_file.unlink(missing_ok=True)
    print(f"{m.name} killed (SIGKILL, pid {pid}); `make cluster-restart NODE={m.name}` starts it again.")
    return 0


def cmd_restart(cluster: LocalCluster, args: argparse.Namespace) -> int:
    m = cluster.member(args.node)
    if cluster.pid(m) is not None:
        print(f"{m.name}: {cluster.stop_member(m, args.timeout)}")
    for port in m.ports:
        if not _port_free(port):
            raise ClusterError(f"port {port} of {m.name} is in use by another process")
    pid = cluster.spawn(m)
    # A leader needs a quorum of members running: with fewer (after a crash of every
    # member, say), the member can only be started and answer; the others bring the leader.
    up, quorum = len(cluster.running()), len(cluster.members) // 2 + 1
    deadline = time.monotonic() + args.timeout
    while True:
        if not _alive(pid):
            raise ClusterError(f"{m.name} exited during start-up\n{cluster.log_tails([m.name])}")
        status = cluster.statuses().get(m.name)
        if not isinstance(status, str) and status is not None and (status.leader or up < quorum):
            break
        if time.monotonic() > deadline:
            raise ClusterError(f"{m.name} (pid {pid}) runs but found no leader within {args.timeout:g}s\n{cluster.log_tails([m.name])}")
        time.sleep(0.1)
    if up < quorum:
        stopped = [x.name for x in cluster.members if x.name not in cluster.running()]
        print(f"{m.name} started (pid {pid}); waiting for quorum ({up} of {len(cluster.members)} members up, "
              f"{quorum} needed for a leader); start the others ({', '.join(f'make cluster-restart NODE={n}' for n in stopped)}), "
              f"or every member at once: make cluster-stop && make cluster")
        return 0
    print(f"{m.name} started (pid {pid}).")
    print(cluster.table(cluster.statuses()))
    return 0


def cmd_logs(cluster: LocalCluster, args: argparse.Namespace) -> int:
    if not cluster.defined:
        print(f"No cluster in {cluster.base}.")
        return 1
    names = [cluster.member(args.node).name] if args.node else None
    print(cluster.log_tails(names, args.lines))
    return 0


def cmd_clean(cluster: LocalCluster, args: argparse.Namespace) -> int:
    if cluster.defined and cluster.running():
        cmd_stop(cluster, args, keep_note=False)
    if cluster.base.exists():
        shutil.rmtree(cluster.base)
        print(f"Removed {cluster.base}.")
    return 0


# -- helpers --------------------------------------------------------------------------


def _parse_ports(text: str, what: str = "PORTS") -> list[int]:
    parts = text.replace(",", " ").split()
    try:
        ports = [int(p) for p in parts]
    except ValueError:
        raise ClusterError(f"{what} must be port numbers separated by spaces, got {text!r}") from None
    if not ports or any(not 0 < p < 65536 for p in ports) or len(set(ports)) != len(ports):
        raise ClusterError(f"{what} must be distinct port numbers (1-65535), got {text!r}")
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _alive(pid: int) -> bool:
    state = _process_state(pid)
    return state is not None and state not in ("Z", "X")


def _is_member_process(pid: int, member: Member) -> bool:
    """Whether ``pid`` is a live coord-server started for ``member`` (its name and data
    directory on the command line)."""
    if not _alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"coord_server.cli" in argv and member.name.encode() in argv and str(member.data_dir).encode() in argv


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * lines))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/cluster.py", description="A local coord cluster in the background.")
    parser.add_argument("--dir", default=".cluster", help="where data, pids and logs live (default: .cluster)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the members and wait for a leader")
    start.add_argument("--ports", help='one port per member, e.g. "7001 7002 7003" (default)')
    start.add_argument("--peer-ports", help='with --tls, one peer port per member (default: each port + 100)')
    start.add_argument("--timeout", type=float, default=60, help="seconds to wait for a leader (default: 60)")
    start.add_argument("--tls", action="store_true", help="TLS for clients, mutual TLS between members (peer port = port + 100)")
    start.add_argument("--certs", help="certificate directory for --tls (default: DIR/certs; made when missing)")
    start.add_argument("--auth", action="store_true", help="authentication on: an admin user (token in DIR/root-token) and a peer secret")
    sub.add_parser("status", help="role, term, leader, commit and applied index of every member")
    stop = sub.add_parser("stop", help="SIGTERM every member, then SIGKILL what is left")
    stop.add_argument("--timeout", type=float, default=15, help="seconds to wait after SIGTERM (default: 15)")
    kill = sub.add_parser("kill", help="SIGKILL one member (a crash)")
    kill.add_argument("node", nargs="?")
    restart = sub.add_parser("restart", help="stop one member if it runs, then start it again")
    restart.add_argument("node", nargs="?")
    restart.add_argument("--timeout", type=float, default=30, help="seconds to wait for it to stop or join (default: 30)")
    logs = sub.add_parser("logs", help="the last lines of every member's log (or one's)")
    logs.add_argument("node", nargs="?")
    logs.add_argument("--lines", type=int, default=20)
    clean = sub.add_parser("clean", help="stop the cluster and delete its directory (data and logs)")
    clean.add_argument("--timeout", type=float, default=15)
    args = parser.parse_args(argv)
    cluster = LocalCluster(Path(args.dir))
    command = {
        "start": cmd_start, "status": cmd_status, "stop": cmd_stop, "kill": cmd_kill,
        "restart": cmd_restart, "logs": cmd_logs, "clean": cmd_clean,
    }[args.command]
    try:
        return command(cluster, args)
    except ClusterError as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

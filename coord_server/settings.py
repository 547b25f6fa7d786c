"""Settings of one coord-server process: command-line flags, a TOML file, defaults.

Precedence: a flag given on the command line beats the TOML file, which beats the default.
Every setting is validated here, so a mistake is reported before anything starts, with the
setting's name and the offending value.
"""

from __future__ import annotations

import argparse
import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from coord_server.tls import ClientListenerTLS, PeerTLS, TLSFileError, load_client_listener, load_peer

DEFAULT_LISTEN = "127.0.0.1:7379"


class SettingsError(ValueError):
    """A setting is missing, malformed or inconsistent with another; the message says which."""


@dataclass(frozen=True)
class ServerSettings:
    name: str = "default"
    """This member's name, unique in the cluster."""
    data_dir: str = ""
    """Where the log and snapshots live; default ``./<name>.coord``."""
    listen: str = DEFAULT_LISTEN
    """host:port serving clients, and peers too unless ``peer_listen`` is given (gRPC)."""
    advertise: str = ""
    """host:port clients (and, without ``peer_listen``, peers) should use; default: ``listen``."""
    initial_cluster: dict[str, str] = field(default_factory=dict)
    """name -> peer host:port of every founding member; default: just this member."""
    peer_listen: str = ""
    """host:port of a separate listener serving only peers (Raft and health); required
    with TLS. Empty: one port serves everything."""
    peer_advertise: str = ""
    """host:port other members use to reach ``peer_listen``; default: ``peer_listen``."""
    initial_cluster_clients: dict[str, str] = field(default_factory=dict)
    """name -> client host:port of every founding member, when clients and peers use
    separate listeners (the client addresses that ``coord-leader`` hints name)."""
    cert_file: str = ""
    """PEM certificate the client listener presents (TLS for clients; docs/security.md)."""
    key_file: str = ""
    """PEM private key of ``cert_file``."""
    client_ca_file: str = ""
    """PEM CA: when given, clients must present a certificate signed by it."""
    peer_cert_file: str = ""
    """PEM certificate this member presents to peers, as server and as client (mTLS)."""
    peer_key_file: str = ""
    """PEM private key of ``peer_cert_file``."""
    peer_ca_file: str = ""
    """PEM CA that signs every member's peer certificate."""
    peer_secret_file: str = ""
    """File holding the cluster's peer secret (the same on every member; at least 16
    printable bytes, mode 600): every peer call carries it and is refused without it
    (docs/security.md). Required with auth unless peers use mutual TLS."""
    join: str = ""
    """host:port of a live member: join that cluster (as a learner, or as the member that
    etcd's MemberAdd added at this peer address) instead of founding one."""
    heartbeat_ms: int = 100
    """Leader heartbeat interval."""
    election_ms: int = 1000
    """Base election timeout: a follower campaigns after a random 1x..2x of it without
    hearing the leader. 1,000 ms (etcd's): on the busy 2-core machine, members loading a
    million keys were kept off the CPU for 0.3-1.6 s at a time (no thread of theirs ran:
    bench/thread_probe.py), and with 300 ms each such stall of the leader cost an
    election (3-12 per 1M load); with 1,000 ms none (README "Timing"). A leader that
    crashed is still replaced in 0.3-0.6 s: its followers see its connection close and
    campaign after 300-600 ms (node.py LOST_LEADER_SECONDS). Only a leader
    that hangs or is cut off takes the whole 1-2 s, as in etcd."""
    tick_ms: int = 20
    """Granularity of the Raft clock; heartbeat_ms and election_ms must be multiples."""
    snapshot_entries: int = 100_000
    """Snapshot (and compact the log) after this many applied entries. etcd's default
    (--snapshot-count): serialising the state pauses a member for a time that grows with
    the state and its uncompacted history (~200 ms for 100,000 revisions measured), so
    snapshots are rare; a restart then replays at most this many entries (about 2 s at the
    45,000-63,000 applies/s measured)."""
    log_level: str = "info"
    log_format: str = "text"
    """text, or json: one JSON object per line with node, term and request ids
    (docs/observability.md)."""
    metrics_listen: str = ""
    """host:port serving Prometheus metrics at /metrics over HTTP; empty: no metrics."""
    http_listen: str = ""
    """host:port of the member's HTTP listener (etcd's JSON gateway, coord.v1 as
    Connect JSON, the dashboard; coord_server/http); empty: no HTTP."""
    peer_overrides: dict[str, str] = field(default_factory=dict)
    """name -> host:port: reach member NAME at this address instead of the peer address
    it advertises. For tests (the chaos harness routes every peer link through a fault
    proxy) and NAT setups; clients are still told the advertised addresses."""
    auth_file: str = ""
    """TOML or JSON file of users (bearer token hashes) and roles, the cluster's first auth
    state (a bootstrap: users and roles then change at run time); empty: auth stays as the
    replicated state has it, off by default as in etcd (docs/security.md)."""
    quota_bytes: int = 2 * 1024**3
    """Backend size quota: writes that grow the store fail with RESOURCE_EXHAUSTED while
    it keeps more than this (0: none). etcd's default, 2 GiB."""
    max_watches_per_stream: int = 1_000
    """Watchers one Watch stream may hold (0: no limit)."""
    max_leases_per_client: int = 10_000
    """Live leases one client (user, or connection when auth is off) may hold (0: no limit)."""

    @property
    def advertise_address(self) -> str:
        return self.advertise or self.listen

    @property
    def data_directory(self) -> str:
        return self.data_dir or f"{self.name}.coord"

    @property
    def peer_advertise_address(self) -> str:
        """The address peers use: ``peer_advertise``, ``peer_listen``, else the one port."""
        return self.peer_advertise or self.peer_listen or self.advertise_address

    @property
    def members(self) -> dict[str, str]:
        """name -> peer address of every founding member."""
        return self.initial_cluster or {self.name: self.peer_advertise_address}

    @property
    def member_clients(self) -> dict[str, str]:
        """name -> client address of every founding member (the same on every founder,
        since it goes into the bootstrap entries)."""
        if self.initial_cluster_clients:
            return dict(self.initial_cluster_clients)
        if not self.initial_cluster or (self.peer_listen and list(self.initial_cluster) == [self.name]):
            return {self.name: self.advertise_address}
        return dict(self.initial_cluster)

    # Files are read once, by validate(), and the server uses what was read (cached):
    # a file changed in between cannot make a start fail after the settings were checked.
    @cached_property
    def client_tls(self) -> ClientListenerTLS | None:
        """The client listener's TLS material, or None for an insecure client port."""
        if not self.cert_file:
            return None
        try:
            return load_client_listener(self.cert_file, self.key_file, self.client_ca_file)
        except TLSFileError as err:
            raise SettingsError(str(err)) from None

    @cached_property
    def peer_tls(self) -> PeerTLS | None:
        """The peer mTLS material, or None for insecure peer traffic."""
        if not self.peer_cert_file:
            return None
        try:
            return load_peer(self.peer_cert_file, self.peer_key_file, self.peer_ca_file)
        except TLSFileError as err:
            raise SettingsError(str(err)) from None

    @cached_property
    def peer_secret(self) -> bytes | None:
        """The peer secret (coord_server/transport/peer_auth.py), or None without one."""
        if not self.peer_secret_file:
            return None
        from coord_server.transport.peer_auth import PeerSecretError, load_peer_secret

        try:
            return load_peer_secret(self.peer_secret_file)
        except PeerSecretError as err:
            raise SettingsError(str(err)) from None

    @cached_property
    def auth(self) -> Any:
        """The loaded auth file (coord_server.auth.AuthConfig), or None when auth is off."""
        if not self.auth_file:
            return None
        from coord_server.auth.config import AuthFileError, load_auth_file

        try:
            return load_auth_file(self.auth_file)
        except AuthFileError as err:
            raise SettingsError(str(err)) from None

    def validate(self) -> None:
        if not self.name or any(c in self.name for c in "=, \t/"):
            raise SettingsError(f"name must be non-empty without '=', ',', '/' or spaces, got {self.name!r}")
        for label, address in (("listen", self.listen), ("advertise", self.advertise_address)):
            parse_address(label, address)
        if self.join and self.initial_cluster:
            raise SettingsError("give either join (an existing cluster) or initial_cluster (a new one), not both")
        if self.join:
            parse_address("join", self.join)
        if self.initial_cluster and self.name not in self.initial_cluster:
            raise SettingsError(
                f"initial_cluster must name this member ({self.name!r}); it names "
                f"{', '.join(sorted(self.initial_cluster))}"
            )
        for member, address in self.initial_cluster.items():
            parse_address(f"initial_cluster[{member}]", address)
        for member, address in self.peer_overrides.items():
            parse_address(f"peer_overrides[{member}]", address if isinstance(address, str) else "")
        self._validate_listeners_and_tls()
        if self.tick_ms <= 0:
            raise SettingsError(f"tick_ms must be positive, got {self.tick_ms}")
        for label, value in (("heartbeat_ms", self.heartbeat_ms), ("election_ms", self.election_ms)):
            if value <= 0 or value % self.tick_ms:
                raise SettingsError(f"{label} ({value}) must be a positive multiple of tick_ms ({self.tick_ms})")
        if self.election_ms <= self.heartbeat_ms:
            raise SettingsError(
                f"election_ms ({self.election_ms}) must be greater than heartbeat_ms ({self.heartbeat_ms})"
            )
        if self.snapshot_entries < 100:
            raise SettingsError(f"snapshot_entries must be at least 100, got {self.snapshot_entries}")
        for label, value in (
            ("quota_bytes", self.quota_bytes), ("max_watches_per_stream", self.max_watches_per_stream),
            ("max_leases_per_client", self.max_leases_per_client),
        ):
            if value < 0:
                raise SettingsError(f"{label} must be 0 (no limit) or positive, got {value}")
        self.auth  # read and checked here, before anything starts
        self.peer_secret  # noqa: B018
        self._validate_peer_authentication()
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, got {self.log_format!r}")
        if self.metrics_listen:
            parse_address("metrics_listen", self.metrics_listen)
        if self.http_listen:
            parse_address("http_listen", self.http_listen)

    def _validate_peer_authentication(self) -> None:
        """With auth on, peer RPCs must be authenticated too: otherwise anyone could
        propose writes through the peer service and walk around every token."""
        if not self.auth_file or self.peer_secret_file or (self.peer_listen and self.peer_cert_file):
            return
        where = "the client port" if not self.peer_listen else f"the peer port {self.peer_listen}"
        raise SettingsError(
            f"auth is on (auth_file) but the peer service on {where} would accept anyone: give every member "
            "the same peer_secret_file (--peer-secret-file; `make cluster AUTH=1` makes one), or peer mutual "
            "TLS (peer_listen with peer_cert_file, peer_key_file and peer_ca_file); docs/security.md"
        )

    def _validate_listeners_and_tls(self) -> None:
        """Separate listeners and TLS files (docs/security.md); every file is read now."""
        if self.peer_listen:
            parse_address("peer_listen", self.peer_listen)
            if self.peer_listen == self.listen:
                raise SettingsError(f"peer_listen must differ from listen ({self.listen})")
        if self.peer_advertise:
            if not self.peer_listen:
                raise SettingsError("peer_advertise needs peer_listen (a separate peer listener)")
            parse_address("peer_advertise", self.peer_advertise)
        if self.initial_cluster_clients:
            if not self.initial_cluster:
                raise SettingsError("initial_cluster_clients needs initial_cluster")
            if set(self.initial_cluster_clients) != set(self.initial_cluster):
                raise SettingsError(
                    "initial_cluster_clients must name the same members as initial_cluster: "
                    f"{', '.join(sorted(self.initial_cluster_clients))} vs {', '.join(sorted(self.initial_cluster))}"
                )
            for member, address in self.initial_cluster_clients.items():
                parse_address(f"initial_cluster_clients[{member}]", address)
        elif self.peer_listen and len(self.initial_cluster) > 1:
            raise SettingsError(
                "with a separate peer_listen, initial_cluster names peer addresses; give the members' "
                "client addresses in initial_cluster_clients too (clients are sent to them)"
            )
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingsError("cert_file and key_file go together: give both or neither")
        if self.client_ca_file and not self.cert_file:
            raise SettingsError("client_ca_file (client certificate checks) needs cert_file and key_file (TLS)")
        peer_files = (self.peer_cert_file, self.peer_key_file, self.peer_ca_file)
        if any(peer_files) and not all(peer_files):
            raise SettingsError("peer mutual TLS needs all of peer_cert_file, peer_key_file and peer_ca_file")
        if self.peer_cert_file and not self.peer_listen:
            raise SettingsError("peer mutual TLS needs a separate peer listener: give peer_listen")
        if self.cert_file and not self.peer_cert_file:
            raise SettingsError(
                "client TLS (cert_file) needs peer mutual TLS too (peer_cert_file, peer_key_file, "
                "peer_ca_file and peer_listen), or peer traffic would travel in clear"
            )
        self.client_tls  # noqa: B018 - reads and checks the files now (TLSFileError -> SettingsError)
        self.peer_tls  # noqa: B018


def parse_address(label: str, address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{label} must be host:port, got {address!r}")
    return host, int(port)


def parse_initial_cluster(text: str, what: str = "initial_cluster") -> dict[str, str]:
    """``n1=127.0.0.1:7001,n2=127.0.0.1:7002`` -> {"n1": "127.0.0.1:7001", ...}."""
    members: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise SettingsError(f"{what} entries must be name=host:port, got {item!r}")
        if name in members:
            raise SettingsError(f"{what} names {name!r} twice")
        members[name] = address
    return members


def stable_id(*parts: str) -> int:
    """A positive 63-bit id derived from ``parts`` (same input, same id, on every node)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1) or 1


def cluster_id_of(members: dict[str, str]) -> int:
    return stable_id("cluster", *(f"{n}={a}" for n, a in sorted(members.items())))


def member_id_of(cluster_id: int, name: str) -> int:
    return stable_id("member", str(cluster_id), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coord-server",
        description="Run one coord member. With no arguments: a one-member cluster on "
        f"{DEFAULT_LISTEN} with its data in ./default.coord.",
        usage="coord-server [options]\n       coord-server restore --snapshot FILE ... (coord-server restore --help)",
        epilog="coord-server restore writes a new data directory from a `coordctl snapshot save` backup "
               "instead of serving (docs/operations.md, Backup and restore).",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of the settings below (snake_case keys)")
    parser.add_argument("--name", help="this member's name (default: default)")
    parser.add_argument("--data-dir", help="data directory (default: ./NAME.coord)")
    parser.add_argument("--listen", help=f"host:port for clients, and peers without --peer-listen (default: {DEFAULT_LISTEN})")
    parser.add_argument("--advertise", help="host:port clients use to reach this member (default: --listen)")
    parser.add_argument("--initial-cluster", metavar="N=ADDR,...", help="founding members' peer addresses, e.g. n1=127.0.0.1:7001,n2=127.0.0.1:7002")
    tls = parser.add_argument_group("separate peer listener and TLS (docs/security.md)")
    tls.add_argument("--peer-listen", metavar="ADDR", help="host:port of a listener serving only peers (required with TLS)")
    tls.add_argument("--peer-advertise", metavar="ADDR", help="host:port peers use to reach --peer-listen (default: --peer-listen)")
    tls.add_argument("--initial-cluster-clients", metavar="N=ADDR,...",
                     help="founding members' client addresses, with --peer-listen and --initial-cluster")
    tls.add_argument("--cert-file", metavar="PEM", help="certificate of the client listener (turns on TLS for clients)")
    tls.add_argument("--key-file", metavar="PEM", help="private key of --cert-file")
    tls.add_argument("--client-ca-file", metavar="PEM", help="require client certificates signed by this CA")
    tls.add_argument("--peer-cert-file", metavar="PEM", help="this member's peer certificate (mutual TLS between peers)")
    tls.add_argument("--peer-key-file", metavar="PEM", help="private key of --peer-cert-file")
    tls.add_argument("--peer-ca-file", metavar="PEM", help="CA that signs every member's peer certificate")
    parser.add_argument("--join", metavar="ADDR", help="join the cluster of the live member at ADDR (added as a learner, or as the member "
                        "`etcdctl member add` added at this peer address)")
    parser.add_argument("--heartbeat-ms", type=int, help="leader heartbeat interval (default: 100)")
    parser.add_argument("--election-ms", type=int, help="base election timeout (default: 1000)")
    parser.add_argument("--tick-ms", type=int, help="Raft clock granularity (default: 20)")
    parser.add_argument("--snapshot-entries", type=int, help="snapshot after this many applied entries (default: 100000)")
    parser.add_argument("--log-level", help="debug, info, warning or error (default: info)")
    parser.add_argument("--log-format", help="text, or json: one JSON object per line (default: text)")
    parser.add_argument(
        "--metrics-listen", metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP at HOST:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--http-listen", metavar="HOST:PORT",
        help="serve HTTP at HOST:PORT: etcd's JSON gateway, coord.v1 as Connect JSON, the dashboard (default: off)",
    )
    parser.add_argument(
        "--peer-override", dest="peer_overrides", action="append", metavar="NAME=ADDR",
        help="reach member NAME at ADDR instead of its advertised peer address (repeatable or "
        "comma-separated; for testing through fault proxies and NAT setups)",
    )
    parser.add_argument("--auth-file", metavar="FILE", help="users and roles (TOML, or JSON by .json suffix); enables auth")
    parser.add_argument("--peer-secret-file", metavar="FILE",
                        help="the cluster's peer secret, same file on every member (required with auth unless peer mTLS)")
    parser.add_argument("--quota-bytes", type=int, help="backend size quota in bytes, 0 for none (default: 2 GiB)")
    parser.add_argument("--max-watches-per-stream", type=int, help="watchers per Watch stream (default: 1000)")
    parser.add_argument("--max-leases-per-client", type=int, help="live leases per client (default: 10000)")
    return parser


def load_settings(argv: list[str] | None = None) -> ServerSettings:
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as f:
                values.update(tomllib.load(f))
        except OSError as err:
            raise SettingsError(f"cannot read config file {args.config}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise SettingsError(f"config file {args.config} is not valid TOML: {err}") from None
    for key, value in vars(args).items():
        if key != "config" and value is not None:
            values[key] = value
    known = {f.name for f in fields(ServerSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    for key in ("initial_cluster", "initial_cluster_clients"):
        if isinstance(values.get(key), str):
            values[key] = parse_initial_cluster(values[key], key)
    overrides = values.get("peer_overrides")
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, list) and all(isinstance(item, str) for item in overrides):
        values["peer_overrides"] = parse_initial_cluster(",".join(overrides), "peer_overrides")
    for setting in fields(ServerSettings):
        name = setting.name
        expected = dict if name in ("initial_cluster", "initial_cluster_clients", "peer_overrides") else type(setting.default)
        if name in values and not isinstance(values[name], expected):
            raise SettingsError(
                f"{name} must be {expected.__name__}, got {values[name]!r}"
            )
    settings = ServerSettings(**values)
    settings.validate()
    return settings

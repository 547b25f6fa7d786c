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
from typing import Any

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
    """host:port serving clients and peers (gRPC)."""
    advertise: str = ""
    """host:port other members and clients should use; default: ``listen``."""
    initial_cluster: dict[str, str] = field(default_factory=dict)
    """name -> host:port of every founding member; default: just this member."""
    join: str = ""
    """host:port of a live member: join that cluster (as a learner) instead of founding one."""
    heartbeat_ms: int = 100
    """Leader heartbeat interval."""
    election_ms: int = 300
    """Base election timeout: a follower campaigns after a random 1x..2x of it without a
    leader. 300 ms keeps failover well under a second, and with PreVote and CheckQuorum no
    spurious election was seen under load on a busy 2-core machine (README, "Timing")."""
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
    peer_overrides: dict[str, str] = field(default_factory=dict)
    """name -> host:port: reach member NAME at this address instead of the peer address
    it advertises. For tests (the chaos harness routes every peer link through a fault
    proxy) and NAT setups; clients are still told the advertised addresses."""
    auth_file: str = ""
    """TOML or JSON file of users (bearer token hashes) and roles; empty: auth disabled,
    as in etcd (docs/security-auth.md)."""
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
    def members(self) -> dict[str, str]:
        return self.initial_cluster or {self.name: self.advertise_address}

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
        if self.auth_file:
            from coord_server.auth.config import AuthFileError, load_auth_file

            try:
                load_auth_file(self.auth_file)  # loaded again by the server: reported here, before anything starts
            except AuthFileError as err:
                raise SettingsError(str(err)) from None
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, got {self.log_format!r}")
        if self.metrics_listen:
            parse_address("metrics_listen", self.metrics_listen)


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
    )
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of the settings below (snake_case keys)")
    parser.add_argument("--name", help="this member's name (default: default)")
    parser.add_argument("--data-dir", help="data directory (default: ./NAME.coord)")
    parser.add_argument("--listen", help=f"host:port for clients and peers (default: {DEFAULT_LISTEN})")
    parser.add_argument("--advertise", help="host:port others use to reach this member (default: --listen)")
    parser.add_argument("--initial-cluster", metavar="N=ADDR,...", help="founding members, e.g. n1=127.0.0.1:7001,n2=127.0.0.1:7002")
    parser.add_argument("--join", metavar="ADDR", help="join the cluster of the live member at ADDR (added as a learner)")
    parser.add_argument("--heartbeat-ms", type=int, help="leader heartbeat interval (default: 100)")
    parser.add_argument("--election-ms", type=int, help="base election timeout (default: 300)")
    parser.add_argument("--tick-ms", type=int, help="Raft clock granularity (default: 20)")
    parser.add_argument("--snapshot-entries", type=int, help="snapshot after this many applied entries (default: 100000)")
    parser.add_argument("--log-level", help="debug, info, warning or error (default: info)")
    parser.add_argument("--log-format", help="text, or json: one JSON object per line (default: text)")
    parser.add_argument(
        "--metrics-listen", metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP at HOST:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--peer-override", dest="peer_overrides", action="append", metavar="NAME=ADDR",
        help="reach member NAME at ADDR instead of its advertised peer address (repeatable or "
        "comma-separated; for testing through fault proxies and NAT setups)",
    )
    parser.add_argument("--auth-file", metavar="FILE", help="users and roles (TOML, or JSON by .json suffix); enables auth")
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
    if isinstance(values.get("initial_cluster"), str):
        values["initial_cluster"] = parse_initial_cluster(values["initial_cluster"])
    overrides = values.get("peer_overrides")
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, list) and all(isinstance(item, str) for item in overrides):
        values["peer_overrides"] = parse_initial_cluster(",".join(overrides), "peer_overrides")
    for f in fields(ServerSettings):
        expected = dict if f.name in ("initial_cluster", "peer_overrides") else type(f.default)
        if f.name in values and not isinstance(values[f.name], expected):
            raise SettingsError(
                f"{f.name} must be {expected.__name__}, got {values[f.name]!r}"
            )
    settings = ServerSettings(**values)
    settings.validate()
    return settings

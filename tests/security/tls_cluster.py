"""A TLS cluster of real coord-server processes for tests: the integration harness's
Cluster with a second (peer) port per member, TLS on the client ports (client
certificates required) and mutual TLS on the peer ports, with certificates made by
tools/certs.py (the code behind `make certs`)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import grpc

from tests.integration.harness import Cluster, free_ports

ROOT = Path(__file__).resolve().parents[2]


def certs_tool() -> ModuleType:
    """tools/certs.py as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("coord_tools_certs", ROOT / "tools" / "certs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_certs(directory: Path, names: tuple[str, ...] = ("n1", "n2", "n3")) -> Path:
    return certs_tool().make_certs(directory, names)  # type: ignore[no-any-return]


def server_tls_flags(certs: Path, name: str, ca: Path | None = None) -> list[str]:
    """coord-server flags for member ``name`` with the certificates in ``certs`` (its CA,
    or ``ca`` when given)."""
    cert, key, ca_file = certs / f"{name}.pem", certs / f"{name}-key.pem", ca or certs / "ca.pem"
    return [
        "--cert-file", str(cert), "--key-file", str(key), "--client-ca-file", str(ca_file),
        "--peer-cert-file", str(cert), "--peer-key-file", str(key), "--peer-ca-file", str(ca_file),
    ]


def channel_credentials(certs: Path, name: str = "client", ca: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{name}-key.pem").read_bytes(),
        certificate_chain=(certs / f"{name}.pem").read_bytes(),
    )


@dataclass
class TLSCluster(Cluster):
    """``certs``: a directory made by make_certs() with certificates for n1..nN."""

    certs: Path = Path()

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.size)
        names = [f"n{i + 1}" for i in range(self.size)]
        self.client_addresses = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(names)}
        self.peer_addresses = {n: f"127.0.0.1:{ports[self.size + i]}" for i, n in enumerate(names)}
        peers = ",".join(f"{n}={a}" for n, a in self.peer_addresses.items())
        clients = ",".join(f"{n}={a}" for n, a in self.client_addresses.items())
        for name in names:
            membership = [
                "--initial-cluster", peers, "--initial-cluster-clients", clients,
                "--peer-listen", self.peer_addresses[name], *server_tls_flags(self.certs, name),
            ]
            self.nodes[name] = self._node(name, self.client_addresses[name], membership)

    def channel(self, name: str) -> grpc.Channel:
        """A TLS channel to ``name``'s client port with the client certificate."""
        if name not in self._channels:
            self._channels[name] = grpc.secure_channel(self.nodes[name].address, channel_credentials(self.certs))
        return self._channels[name]

    @property
    def endpoints(self) -> list[str]:
        return list(self.client_addresses.values())

"""Certificates rotated under load without a restart (issue 16, point 6), on a 3-member
TLS cluster of real processes (client TLS with client certificates, peer mutual TLS).

Every member's certificate and key (one pair serves both its listeners, as `make
certs` makes them) are replaced in turn by a new pair signed by the same CA: key file
first, then certificate, each by an atomic rename, so there is a moment when the two do
not match (the member keeps its old pair then; tls_reload.py, rule 1). Meanwhile two
clients write without pause: one over long-lived connections (the client library), one
opening a new TLS connection for every put (each handshake sees whatever certificate
the member presents at that moment). Not one request may fail; new handshakes must see
the new certificates on both ports; SIGHUP reloads and does not stop the process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coord.v1 import kv_pb2, kv_pb2_grpc
from coord_client import Client, TLSConfig
from tests.integration.harness import running_cluster, wait_until
from tests.security.tls_cluster import TLSCluster, certs_tool, channel_credentials, make_certs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPORT = os.environ.get("COORD_ROTATION_REPORT", "")


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[TLSCluster]:
    certs = make_certs(tmp_path / "certs")
    with running_cluster(tmp_path / "cluster", 3, cluster_class=TLSCluster, certs=certs, leader_timeout=60) as cluster:
        assert isinstance(cluster, TLSCluster)
        yield cluster


def served_certificate(address: str, certs: Path, client: str = "client") -> bytes:
    """The DER certificate a new TLS handshake with ``address`` sees."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.check_hostname = False
    context.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}-key.pem"))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def rotate(certs: Path, name: str, staging: Path) -> bytes:
    """A new pair for ``name`` signed by the CA, renamed into place key first; the new
    certificate (DER)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for f in ("ca.pem", "ca-key.pem"):
        shutil.copy(certs / f, staging / f)
    certs_tool().make_leaf(staging, name)
    os.replace(staging / f"{name}-key.pem", certs / f"{name}-key.pem")
    time.sleep(0.3)  # a watcher poll may well see the mismatched pair (kept out, rule 1)
    os.replace(staging / f"{name}.pem", certs / f"{name}.pem")
    return der_of(certs / f"{name}.pem")


class Load:
    """Puts without pause from two threads until stopped; counts and failures."""

    def __init__(self, cluster: TLSCluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.counts = {"long-lived": 0, "new connection": 0}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._long_lived), threading.Thread(target=self._new_connections)]

    def _long_lived(self) -> None:
        certs = self.cluster.certs
        tls = TLSConfig(ca_file=str(certs / "ca.pem"), cert_file=str(certs / "client.pem"), key_file=str(certs / "client-key.pem"))
        with Client(self.cluster.endpoints, tls=tls, timeout=20) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    client.put(f"rotation/long/{i % 50}", str(i))
                    self.counts["long-lived"] += 1
                except Exception as err:  # noqa: BLE001 - counted
                    self.failures.append(f"long-lived: {err!r}")
                i += 1

    def _new_connections(self) -> None:
        names = list(self.cluster.nodes)
        i = 0
        while not self.stop.is_set():
            address = self.cluster.nodes[names[i % len(names)]].address
            try:
                with grpc.secure_channel(address, channel_credentials(self.cluster.certs)) as channel:
                    kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key=f"rotation/new/{i % 50}".encode(), value=b"v"), timeout=20)
                self.counts["new connection"] += 1
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE and dict(err.trailing_metadata() or ()).get("coord-leader"):
                    pass  # a follower that does not forward names the leader: an answer, not a failure
                else:
                    self.failures.append(f"new connection to {address}: {err.code().name} {err.details()}")
            i += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def test_rotating_every_members_certificate_under_load_fails_no_request(cluster: TLSCluster, tmp_path: Path) -> None:
    certs = cluster.certs
    with Load(cluster) as load:
        wait_until(lambda: min(load.counts.values()) >= 20, 60, "the load to run")
        for name in cluster.nodes:
            client_address, peer_address = cluster.client_addresses[name], cluster.peer_addresses[name]
            old = served_certificate(client_address, certs)
            new = rotate(certs, name, tmp_path / "staging")
            assert new != old
            wait_until(lambda: served_certificate(client_address, certs) == new, 30, f"{name}'s client port to serve the new certificate")
            # The peer port too (a peer's certificate as the client: only peers reach it).
            other = next(n for n in cluster.nodes if n != name)
            wait_until(lambda: served_certificate(peer_address, certs, other) == new, 30, f"{name}'s peer port to serve the new certificate")
        before = dict(load.counts)
        wait_until(lambda: all(load.counts[k] >= before[k] + 20 for k in before), 60, "the load to go on after the rotation")
    report = f"rotation: {sum(load.counts.values())} requests ({load.counts}), {len(load.failures)} failed"
    if REPORT:
        Path(REPORT).write_text(report + "\n")
    print(report)
    assert not load.failures, "\n".join(load.failures[:20])
    # Peers still talk over mutual TLS with the new certificates: a write through each
    # member reaches every member.
    for name in cluster.nodes:
        with grpc.secure_channel(cluster.nodes[name].address, channel_credentials(certs)) as channel:
            kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key=f"rotation/after/{name}".encode(), value=b"ok"), timeout=20)
    cluster.wait_caught_up()


def test_sighup_reloads_and_does_not_stop_the_member(cluster: TLSCluster, tmp_path: Path) -> None:
    certs = cluster.certs
    name = list(cluster.nodes)[0]
    new = rotate(certs, name, tmp_path / "staging")
    os.kill(cluster.nodes[name].pid, signal.SIGHUP)
    wait_until(lambda: served_certificate(cluster.client_addresses[name], certs) == new, 10, "the new certificate after SIGHUP")
    time.sleep(0.5)
    assert cluster.nodes[name].running
    cluster.put("sighup/after", "ok")

"""etcd's JSON gateway under `make cluster TLS=1` (tools/cluster.py start --tls): each
member serves it over HTTPS on its client port + 1000 with the client listener's
certificate, client certificates required; the curl and etcdctl lines `start` prints
work as printed, and a key put through the gateway is the one etcdctl reads over TLS."""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd.servers import client_env, require_etcdctl
from tests.integration.harness import MAKE_CLUSTER_HTTP_OFFSET, MAKE_CLUSTER_PEER_OFFSET, ports_for_make_cluster
from tests.integration.test_make_cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)

PEER_OFFSET, HTTP_OFFSET = MAKE_CLUSTER_PEER_OFFSET, MAKE_CLUSTER_HTTP_OFFSET




@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "tls-gateway")
    try:
        yield cluster
    finally:
        cluster.kill_leftovers()


def post(url: str, body: dict[str, str], context: ssl.SSLContext) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_gateway_serves_https_under_make_cluster_tls(local: LocalCluster) -> None:
    ports = ports_for_make_cluster()
    started = local.run("start", "--tls", "--ports", " ".join(map(str, ports)))
    assert started.returncode == 0, started.stdout + started.stderr
    certs = local.dir / "certs"
    gateway = f"https://127.0.0.1:{ports[0] + HTTP_OFFSET}"

    client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    client.load_cert_chain(str(certs / "client.pem"), str(certs / "client-key.pem"))
    put = post(f"{gateway}/v3/kv/put", {"key": b64("tls-gw"), "value": b64("over https")}, client)
    assert int(put["header"]["revision"]) > 1  # type: ignore[index]

    # The printed curl line, run as printed (curl where it is installed).
    curl_line = next(line.strip() for line in started.stdout.splitlines() if line.strip().startswith("curl "))
    assert f"--cacert {certs / 'ca.pem'}" in curl_line and f"https://127.0.0.1:{ports[0] + HTTP_OFFSET}/" in curl_line
    if subprocess.run(["which", "curl"], capture_output=True).returncode == 0:
        argv = shlex.split(curl_line)
        argv[argv.index("-d") + 1] = json.dumps({"key": b64("tls-gw")})
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert [base64.b64decode(kv["value"]) for kv in json.loads(done.stdout)["kvs"]] == [b"over https"]

    # Another member's gateway, through Python's TLS: the same key.
    other = post(f"https://127.0.0.1:{ports[2] + HTTP_OFFSET}/v3/kv/range", {"key": b64("tls-gw")}, client)
    assert [base64.b64decode(kv["value"]) for kv in other["kvs"]] == [b"over https"]  # type: ignore[index, union-attr]

    # Without a client certificate the handshake is refused; plain HTTP gets no answer.
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        post(f"{gateway}/v3/kv/range", {"key": b64("tls-gw")}, anonymous)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{ports[0] + HTTP_OFFSET}/v3/kv/range", data=b"{}", timeout=10)

    # etcdctl over TLS, with the flags the printed line gives it, reads the gateway's key.
    etcdctl_line = next(line.strip() for line in started.stdout.splitlines() if line.strip().startswith("etcdctl "))
    argv = shlex.split(etcdctl_line)
    argv[0] = require_etcdctl()
    argv[argv.index("put"):] = ["get", "tls-gw", "--print-value-only"]
    got = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=client_env())
    assert got.returncode == 0 and got.stdout.strip() == "over https", got.stderr
    local.run("stop")

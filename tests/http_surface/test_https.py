"""The HTTP listener with TLS: HTTPS with the client listener's certificate, the same
client-certificate rule as the gRPC port (client_ca_file: no certificate, no entry), and
bearer tokens checked by the member's own auth, through the private loopback socket that
reaches the TLS client port (coord_server/http/loopback.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.http_surface.conftest import add_http
from tests.security.conftest import TOKENS, write_auth_file
from tests.security.tls_cluster import TLSCluster, make_certs


class AuthTLSCluster(TLSCluster):
    """TLSCluster whose harness channels carry the admin token (for leader polls)."""

    def channel(self, name: str) -> Any:
        import grpc

        from tests.security.conftest import _Bearer

        if name not in self._channels:
            super().channel(name)
            self._channels[name] = grpc.intercept_channel(self._channels[name], _Bearer(TOKENS["root"]))
        return self._channels[name]


@pytest.fixture(scope="module")
def https_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TLSCluster, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("https")
    certs = make_certs(base / "certs")
    cluster = AuthTLSCluster(base / "cluster", 3, options=("--auth-file", str(write_auth_file(base))), certs=certs)
    urls = add_http(cluster, "https")
    try:
        cluster.start()
        cluster.wait_for_leader()
        yield cluster, urls, certs
    finally:
        cluster.stop_all()


def _ssl(certs: Path, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.check_hostname = False  # the members' certificates name their hosts, the URLs use IPs
    if client_cert:
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client-key.pem"))
    return context


async def _put(url: str, context: ssl.SSLContext, token: str | None, key: str = "a/https") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"key": base64.b64encode(key.encode()).decode(), "value": "eA=="}
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/coord.v1.KV/Put", data=json.dumps(body), headers=headers, ssl=context) as r:
            return r.status, await r.json()


def test_https_with_a_client_certificate_and_a_token_reaches_the_member(
    https_cluster: tuple[TLSCluster, dict[str, str], Path],
) -> None:
    _, urls, certs = https_cluster
    status, body = asyncio.run(_put(urls["n1"], _ssl(certs, True), TOKENS["writer_a"]))
    assert status == 200, body
    assert int(body["header"]["revision"]) > 0


def test_without_a_client_certificate_the_handshake_fails(https_cluster: tuple[TLSCluster, dict[str, str], Path]) -> None:
    _, urls, certs = https_cluster
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        asyncio.run(_put(urls["n2"], _ssl(certs, False), TOKENS["writer_a"]))


def test_plain_http_to_the_https_port_gets_nothing(https_cluster: tuple[TLSCluster, dict[str, str], Path]) -> None:
    _, urls, _ = https_cluster

    async def plain() -> int:
        async with aiohttp.ClientSession() as s:
            async with s.post(urls["n1"].replace("https", "http") + "/coord.v1.KV/Put", data="{}") as r:
                return r.status

    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        asyncio.run(plain())


@pytest.mark.parametrize("token, key, status, code", [
    (None, "a/x", 401, "unauthenticated"),
    ("wrong-token", "a/x", 401, "unauthenticated"),
    (TOKENS["reader"], "a/x", 403, "permission_denied"),
    (TOKENS["writer_a"], "b/x", 403, "permission_denied"),
])
def test_tokens_are_checked_as_on_grpc(
    https_cluster: tuple[TLSCluster, dict[str, str], Path], token: str | None, key: str, status: int, code: str
) -> None:
    _, urls, certs = https_cluster
    got_status, body = asyncio.run(_put(urls["n3"], _ssl(certs, True), token, key))
    assert (got_status, body["code"]) == (status, code), body


def test_coord_member_reaches_other_members_over_tls(https_cluster: tuple[TLSCluster, dict[str, str], Path]) -> None:
    """The dashboard's per-member Status through one HTTPS listener: the listener calls
    the other members' TLS client ports with its peer certificate (one CA signs all)."""
    _, urls, certs = https_cluster

    async def go() -> list[tuple[int, Any, str]]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS['root']}"}
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.post(urls["n1"] + "/coord.v1.Cluster/MemberList", data="{}", headers=headers,
                              ssl=_ssl(certs, True)) as r:
                members = (await r.json())["members"]
            for m in members:
                async with s.post(urls["n1"] + "/coord.v1.Cluster/Status", data="{}", ssl=_ssl(certs, True),
                                  headers={**headers, "Coord-Member": m["id"]}) as r:
                    out.append((r.status, await r.json(), m["id"]))
        return out

    answers = asyncio.run(go())
    assert len(answers) == 3
    for status, body, member_id in answers:
        assert status == 200, body
        assert body["header"]["memberId"] == member_id


def test_https_follows_a_certificate_rotation(https_cluster: tuple[TLSCluster, dict[str, str], Path], tmp_path: Path) -> None:
    """A member whose client certificate is replaced on disk serves the new one on its
    HTTPS listener too, without a restart (as on its gRPC port; tls_reload.py)."""
    from tests.integration.harness import wait_until
    from tests.security.test_tls_reload import rotate, served_certificate

    cluster, urls, certs = https_cluster
    address = urls["n3"].removeprefix("https://")
    before = served_certificate(address, certs)
    new = rotate(certs, "n3", tmp_path / "staging")
    assert new != before
    wait_until(lambda: served_certificate(address, certs) == new, 20, "the HTTPS listener to serve the new certificate")
    wait_until(lambda: served_certificate(cluster.nodes["n3"].address, certs) == new, 20, "the gRPC port too")
    status, body = asyncio.run(_put(urls["n3"], _ssl(certs, True), TOKENS["writer_a"]))
    assert status == 200, body

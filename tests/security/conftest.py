"""Fixtures for the security tests: real coord-server clusters with auth, quotas, limits.

``AuthCluster`` is the integration harness's Cluster whose own channels (status polls,
``call``) carry the admin token, so the harness can wait for a leader on a cluster with
authentication on. Tests talk to the cluster as other users through their own channels
(``channel_as``) or the real client (``Client(token=...)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.conftest import CLUSTERS
from tests.integration.harness import Cluster, running_cluster

ROOT = Path(__file__).resolve().parents[2]

TOKENS = {
    "root": "root-token-0123456789",
    "reader": "reader-token-0123456789",
    "writer_a": "writer-a-token-0123456789",
    "lockers": "lockers-token-0123456789",
}

AUTH_FILE = """
# Roles of the security tests (docs/security.md explains the format).
[roles.admin]
admin = true

[roles.reader]
keys = [{prefix = "", access = "read"}]
locks = [{prefix = "", access = "read"}]
elections = [{prefix = "", access = "read"}]
rings = [{prefix = "", access = "read"}]

[roles.writer_a]
keys = [{prefix = "a/", access = "readwrite"}]

[roles.lockers]
locks = [{prefix = "jobs/", access = "readwrite"}]
elections = [{prefix = "jobs/", access = "readwrite"}]
rings = [{prefix = "jobs/", access = "readwrite"}]

[users.root]
token_sha256 = "%(root)s"
roles = ["admin"]

[users.reader]
token = "%(reader)s"
roles = ["reader"]

[users.writer]
token_sha256 = "%(writer_a)s"
roles = ["writer_a"]

[users.locker]
token = "%(lockers)s"
roles = ["lockers"]
"""


def write_auth_file(directory: Path) -> Path:
    from coord_server.auth import token_digest

    path = directory / "auth.toml"
    path.write_text(AUTH_FILE % {
        "root": token_digest(TOKENS["root"]),
        "reader": TOKENS["reader"],
        "writer_a": token_digest(TOKENS["writer_a"]),
        "lockers": TOKENS["lockers"],
    })
    return path


PEER_SECRET = "peer-secret-of-the-security-tests-0123456789"


def write_peer_secret(directory: Path, secret: str = PEER_SECRET) -> Path:
    """The cluster's peer secret file (mode 600, as coord-server requires)."""
    path = directory / "peer-secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def auth_options(directory: Path) -> tuple[str, ...]:
    """coord-server flags for auth on: the auth file and the peer secret."""
    return ("--auth-file", str(write_auth_file(directory)), "--peer-secret-file", str(write_peer_secret(directory)))


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a sync channel."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: Any) -> Any:
        return _Details(details.method, details.timeout,
                        [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")],
                        details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass
class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


def channel_as(address: str, token: str | None) -> grpc.Channel:
    """A sync channel to ``address`` whose calls carry ``token`` (none: no metadata)."""
    channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


@dataclass
class AuthCluster(Cluster):
    admin_token: str = TOKENS["root"]

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            self._channels[name] = channel_as(self.nodes[name].address, self.admin_token)
        return self._channels[name]


_LIVE: list[Cluster] = []
"""Clusters the module fixtures started and have not stopped yet."""


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """``make(size, options=(...), auth=True)``: a started cluster with a leader, shared by
    the module's tests and stopped (its processes, by pid) after them. ``auth=True``
    starts it with the auth file and the peer secret, as an AuthCluster; other keywords
    (``cluster_class``, ``admin_token``...) go to ``running_cluster``."""
    with contextlib.ExitStack() as stack:

        def make(size: int = 3, *, options: tuple[str, ...] = (), auth: bool = False, **kwargs: Any) -> Cluster:
            base = tmp_path_factory.mktemp("security-cluster")
            if auth:
                options = (*auth_options(base), *options)
                kwargs.setdefault("cluster_class", AuthCluster)
            cluster = stack.enter_context(running_cluster(base, size, options=options, **kwargs))
            _LIVE.append(cluster)
            stack.callback(_LIVE.remove, cluster)
            return cluster

        yield make


@pytest.fixture(autouse=True)
def _report_clusters(request: pytest.FixtureRequest) -> None:
    """Attach the live clusters to each test, so a failure report shows their logs."""
    for cluster in _LIVE:
        request.node.stash.setdefault(CLUSTERS, []).append(cluster)

"""A Connect client from the npm registry (@connectrpc/connect-node, JSON format) calls
coord.v1 over a member's HTTP listener: unary calls, a Connect error code, and the
server-streaming Election.Observe. The service schemas reach Node as a FileDescriptorSet
built from coord's generated modules, so nothing is generated for JavaScript.

Needs node and npm; the packages are installed into tests/http_surface/node at test time
(from the npm registry, or npm's cache). Without node or npm the test is skipped with a
loud reason; CI installs both (.ci/run)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from coord_server.http.connect import coord_services
from tests.integration.harness import Cluster

NODE_DIR = Path(__file__).with_name("node")


def descriptor_set() -> bytes:
    """Every file the coord.v1 services need, dependencies first."""
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file: object) -> None:
        name = file.name  # type: ignore[attr-defined]
        if name in seen:
            return
        for dep in file.dependencies:  # type: ignore[attr-defined]
            add(dep)
        seen.add(name)
        proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)  # type: ignore[attr-defined]
        for message in proto.message_type:
            _json_names(message)
        out.file.append(proto)

    for service in coord_services():
        add(service.file)
    return out.SerializeToString()


def _json_names(message: descriptor_pb2.DescriptorProto) -> None:
    """protoc leaves json_name out of embedded descriptors; protobuf-es reads it."""
    for field in message.field:
        head, *rest = field.name.split("_")
        field.json_name = head + "".join(part[:1].upper() + part[1:] for part in rest)
    for nested in message.nested_type:
        _json_names(nested)


@pytest.fixture(scope="module")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("NODE OR NPM IS MISSING: the Connect client test did not run (apt-get install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        run = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"npm install failed:\n{run.stdout}\n{run.stderr}"
    return NODE_DIR / "client.mjs"


def test_a_connect_node_client_calls_coord(
    node_client: Path, http_cluster: tuple[Cluster, dict[str, str]], tmp_path: Path
) -> None:
    _, urls = http_cluster
    descriptors = tmp_path / "coord.binpb"
    descriptors.write_bytes(descriptor_set())
    prefix = f"node/{uuid.uuid4().hex}/"
    run = subprocess.run(["node", str(node_client), urls["n2"], str(descriptors), prefix],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert int(result["putRevision"]) > 0
    assert result["value"] == "hello from node"
    assert result["revokeError"] == "NotFound"
    assert result["observed"][-1] == "node-leader"

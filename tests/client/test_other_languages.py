"""coord from outside Python: a Node.js program with @grpc/grpc-js and @grpc/proto-loader
loading protos/ at run time (examples/node/quickstart.js: put, get, lease, lock), and the
services listed and described through server reflection, as grpcurl does.

The Node packages are installed by this test's own ``npm install`` into a cache directory
keyed by examples/node/package.json (reused by later runs). Without ``node`` or ``npm``, or
when the registry cannot be reached, the test is skipped and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # type: ignore[import-untyped]
    ProtoReflectionDescriptorDatabase,
)

from coord_client import Client
from tests.client.conftest import ROOT
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(300)

NODE_EXAMPLE = ROOT / "examples" / "node"


def node_modules() -> Path:
    """``npm install`` examples/node/package.json into a cache directory (once per
    version of the file); skip the test when that is not possible."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js client test needs node and npm")
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the Node.js client test needs it to fetch @grpc/grpc-js")
    manifest = (NODE_EXAMPLE / "package.json").read_bytes()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache_home / "coord-tests" / f"node-{hashlib.sha256(manifest).hexdigest()[:12]}"
    ready = target / ".installed"
    if not ready.exists():
        target.mkdir(parents=True, exist_ok=True)
        (target / "package.json").write_bytes(manifest)
        try:
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target, capture_output=True, text=True, timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install took over 240s (is the npm registry reachable?)")
        if proc.returncode != 0:
            pytest.skip(f"npm install failed (is the npm registry reachable?): {proc.stderr.strip()[-500:]}")
        ready.touch()
    return target / "node_modules"


def test_nodejs_client_puts_gets_and_locks(shared_cluster: Cluster, endpoints: str, client: Client, ns: str) -> None:
    modules = node_modules()
    env = dict(os.environ, NODE_PATH=str(modules), COORD_ENDPOINTS=endpoints, COORD_PREFIX=ns)
    proc = subprocess.run(
        ["node", str(NODE_EXAMPLE / "quickstart.js")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["value"] == "hello from node" and seen["lock_acquired"] is True
    assert int(seen["fencing_token"]) > 0 and int(seen["lease"]) > 0
    kv = client.get(ns + "greeting")
    assert kv is not None and kv.value == b"hello from node" and kv.mod_revision == int(seen["put_revision"])
    assert client.lock_info(ns + "lock").holders == ()


def test_server_reflection_lists_and_describes_the_services(shared_cluster: Cluster) -> None:
    address = next(iter(shared_cluster.nodes.values())).address
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {f"coord.v1.{s}" for s in ("KV", "Lease", "Lock", "Election", "Ring", "Cluster")} <= services
        assert "grpc.health.v1.Health" in services
        pool = DescriptorPool(database)
        kv = pool.FindServiceByName("coord.v1.KV")
        assert {"Range", "Put", "DeleteRange", "Txn", "Compact", "Watch"} <= {m.name for m in kv.methods}
        put = pool.FindMessageTypeByName("coord.v1.PutRequest")
        assert {"key", "value", "lease"} <= set(put.fields_by_name)


def test_nodejs_pipeline_batches_many_operations_over_one_stream(
    shared_cluster: Cluster, endpoints: str, client: Client, ns: str
) -> None:
    """examples/node/pipeline.js (docs/pipeline.md): KV.Pipeline from the generated
    stubs of another language: puts, linearizable reads, a Txn, a lock, and an error that
    ends only its own operation."""
    modules = node_modules()
    ops = 500
    env = dict(os.environ, NODE_PATH=str(modules), COORD_ENDPOINTS=endpoints, COORD_PREFIX=ns, COORD_OPS=str(ops))
    proc = subprocess.run(
        ["node", str(NODE_EXAMPLE / "pipeline.js")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["values"] == ["v0", f"v{ops // 2}", f"v{ops - 1}"] and int(seen["count"]) == ops
    assert seen["txn_succeeded"] is True and seen["lock_acquired"] is True and int(seen["fencing_token"]) > 0
    assert seen["error_code"] == "NOT_FOUND" and seen["after_error"] == "swapped"
    assert client.get(ns + "k0").value == b"swapped"
    assert len(client.get_prefix(ns + "k")) == ops
    assert client.lock_info(ns + "lock").holders == ()

"""The probes of the Docker image and the Kubernetes manifest work on a cluster with auth
on (issue 16, point 3), read from the files themselves, never copied here: the
Dockerfile's HEALTHCHECK and the StatefulSet's exec probes are run as commands (coordctl
of this checkout, the member's address in place of 127.0.0.1:7379, no token anywhere in
the environment); its gRPC probes are asked as the kubelet asks them (grpc.health.v1
Check of the probe's service, no metadata).

Then what they say: readiness (and the image's health check) fail on a removed member
and on a member without a leader, while liveness stays SERVING there (restarting a
member does not bring quorum back).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coord.v1 import cluster_pb2, cluster_pb2_grpc
from tests.deploy.test_manifests import _dockerfile, _k8s_documents
from tests.integration.harness import Cluster, wait_until

from .conftest import ROOT

pytestmark = pytest.mark.slow

COORDCTL = str(ROOT / ".venv" / "bin" / "coordctl")
IMAGE_ADDRESS = "127.0.0.1:7379"


def image_health_check() -> list[str]:
    health = _dockerfile()["HEALTHCHECK"][-1]
    return json.loads(health.split("CMD", 1)[1])  # type: ignore[no-any-return]


def k8s_probes() -> dict[str, dict[str, Any]]:
    container = _k8s_documents()["StatefulSet/coord"]["spec"]["template"]["spec"]["containers"][0]
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


def run_command(argv: list[str], address: str) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "coordctl" and IMAGE_ADDRESS in argv, argv
    argv = [COORDCTL, *(address if a == IMAGE_ADDRESS else a for a in argv[1:])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def probe_passes(probe: dict[str, Any], address: str) -> bool:
    if "exec" in probe:
        return run_command(probe["exec"]["command"], address).returncode == 0
    grpc_probe = probe["grpc"]
    assert grpc_probe["port"] == 7379
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=grpc_probe.get("service", "")), timeout=5
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[no-any-return]


def check(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cluster(module_cluster) -> Cluster:  # type: ignore[no-untyped-def]
    return module_cluster(3, auth=True)  # type: ignore[no-any-return]


def test_probes_from_the_image_and_the_manifest_on_an_auth_cluster(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    probes = k8s_probes()
    assert "exec" in probes["readinessProbe"] and "grpc" in probes["livenessProbe"]
    for name, node in cluster.nodes.items():
        wait_until(lambda: check(node.address) == "SERVING", 30, f"{name} to report SERVING")
        done = run_command(image_health_check(), node.address)
        assert done.returncode == 0 and "is healthy" in done.stdout, (done.stdout, done.stderr)
        for kind, probe in probes.items():
            assert probe_passes(probe, node.address), f"{kind} fails on {name}"
        for service in ("coord.v1.KV", "coord.v1.Lock", "coord.raft.v1.Raft"):
            assert check(node.address, service) == "SERVING"
    # A removed member: not ready, still alive.
    removed = next(n for n in cluster.nodes if n != leader)
    removed_id = cluster.status(removed).header.member_id
    cluster.call("MemberRemove", cluster_pb2.ClusterMemberRemoveRequest(id=removed_id), stub_class=cluster_pb2_grpc.ClusterStub, via=leader)
    address = cluster.nodes[removed].address
    wait_until(lambda: check(address) == "NOT_SERVING", 30, "the removed member to report NOT_SERVING")
    assert check(address, "coord.v1.KV") == "NOT_SERVING"
    assert not probe_passes(probes["readinessProbe"], address)
    assert run_command(image_health_check(), address).returncode != 0
    assert probe_passes(probes["livenessProbe"], address)
    cluster.kill(removed)
    del cluster.nodes[removed]
    # A member without a leader (its only peer gone): not ready, still alive.
    survivor_name = cluster.wait_for_leader()
    other = next(n for n in cluster.nodes if n not in (removed, survivor_name))
    cluster.kill(other)
    survivor = cluster.nodes[survivor_name].address
    wait_until(lambda: check(survivor) == "NOT_SERVING", 30, "the member without quorum to report NOT_SERVING")
    done = run_command(image_health_check(), survivor)
    assert done.returncode != 0 and "not serving" in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert not probe_passes(probes["readinessProbe"], survivor)
    assert probe_passes(probes["livenessProbe"], survivor) and probe_passes(probes["startupProbe"], survivor)

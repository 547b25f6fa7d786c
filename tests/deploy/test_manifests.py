"""The deployment files parse, and every coord-server / coordctl command line in them is
one the real parsers accept: the compose members and the Docker image's default command
load as complete settings; the StatefulSet's start script, run by /bin/sh with a stand-in
``coord-server`` for a founding pod and for a pod added by scaling, produces settings that
load too; the probes and the health check are valid coordctl commands."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from coord_client.cli import build_parser as coordctl_parser
from coord_server.settings import ServerSettings, load_settings, parse_address

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _k8s_documents() -> dict[str, dict[str, Any]]:
    """kind/name -> document, over every manifest the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / resource).read_text()):
            assert doc and {"apiVersion", "kind", "metadata"} <= set(doc), f"{resource}: incomplete document"
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def _coordctl_ok(argv: list[str]) -> None:
    assert argv[0] == "coordctl", argv
    args = coordctl_parser().parse_args(argv[1:])  # SystemExit (a failure) on a bad flag
    assert args.handler is not None


# ----------------------------------------------------------------------------- compose


def test_compose_members_load_as_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["n1", "n2", "n3"]
    clusters = set()
    for name, service in services.items():
        assert service["build"]["context"] == ".." and (DEPLOY / ".." / service["build"]["dockerfile"]).exists()
        settings = load_settings(list(service["command"]))
        assert settings.name == name
        assert parse_address("advertise", settings.advertise_address)[0] == name, "peers reach a member by its service name"
        assert settings.data_directory.startswith("/var/lib/coord/")
        volume = service["volumes"][0].split(":")
        assert volume[0] in compose["volumes"] and volume[1] == "/var/lib/coord"
        clusters.add(tuple(sorted(settings.initial_cluster.items())))
        assert settings.initial_cluster[name] == settings.advertise_address
    assert len(clusters) == 1, "every member must be given the same --initial-cluster"
    assert dict(clusters.pop()).keys() == services.keys()
    ports = [service["ports"][0] for service in services.values()]
    assert len(set(ports)) == len(ports)


# ----------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> dict[str, list[str]]:
    """instruction -> its arguments (continuation lines joined), last one wins."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.setdefault(instruction.upper(), []).append(rest.strip())
    return out


def test_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    d = _dockerfile()
    assert d["FROM"][0].startswith("python:3.11-slim")
    user = d["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(d["ENTRYPOINT"][-1]) == ["coord-server"]
    default = load_settings(json.loads(d["CMD"][-1]))
    assert default.listen.endswith(":7379") and default.data_directory.startswith("/var/lib/coord")
    health = d["HEALTHCHECK"][-1]
    assert "CMD" in health
    _coordctl_ok(json.loads(health.split("CMD", 1)[1]))
    for copy in d["COPY"]:
        for source in shlex.split(copy)[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


# ----------------------------------------------------------------------------- Kubernetes


def test_manifests_parse_and_fit_together() -> None:
    docs = _k8s_documents()
    sts = docs["StatefulSet/coord"]
    headless = docs[f"Service/{sts['spec']['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for doc in (headless, docs["Service/coord"]):
        assert doc["spec"]["selector"].items() <= labels.items()
    pdb = docs["PodDisruptionBudget/coord"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert sts["spec"]["podManagementPolicy"] == "Parallel", "members must start together to elect"
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert [m["mountPath"] for m in container["volumeMounts"] if m["name"] == claim] == ["/var/lib/coord"]
    assert container["livenessProbe"]["grpc"]["port"] == 7379
    assert container["startupProbe"]["grpc"]["port"] == 7379
    _coordctl_ok(container["readinessProbe"]["exec"]["command"])


def _run_start_script(tmp_path: Path, pod_name: str) -> ServerSettings:
    """Run the StatefulSet's start script for ``pod_name`` with a ``coord-server`` that
    records its arguments, and load those as the real server would."""
    container = _k8s_documents()["StatefulSet/coord"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "coord-server"
    record = tmp_path / f"{pod_name}.json"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", POD_NAME=pod_name, POD_NAMESPACE="prod")
    done = subprocess.run([*container["command"], *container["args"]], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return load_settings(json.loads(record.read_text()))


@pytest.mark.skipif(shutil.which("sh") is None, reason="no /bin/sh to run the StatefulSet's start script")
def test_statefulset_start_script_gives_valid_settings(tmp_path: Path) -> None:
    domain = "coord-peers.prod.svc.cluster.local"
    founders = {f"coord-{i}": f"coord-{i}.{domain}:7379" for i in range(3)}
    for i in range(3):
        settings = _run_start_script(tmp_path, f"coord-{i}")
        assert settings.name == f"coord-{i}"
        assert settings.initial_cluster == founders
        assert settings.advertise_address == founders[f"coord-{i}"]
        assert not settings.join
    scaled = _run_start_script(tmp_path, "coord-4")  # kubectl scale --replicas=5
    assert scaled.join == "coord.prod.svc.cluster.local:7379" and not scaled.initial_cluster
    assert scaled.advertise_address == f"coord-4.{domain}:7379"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: kustomize build not checked")
def test_kustomize_builds_offline() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(done.stdout))
    assert kinds == ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]

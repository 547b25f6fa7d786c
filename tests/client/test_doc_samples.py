"""Every ```python sample in README.md and docs/*.md type-checks under ``mypy --strict``
as a user's program would (a file outside the package, checked from another directory,
which also proves the editable install is visible to type checkers), and the docs/
samples run (the README's run in test_docs.py): each as written, a TLS one against a TLS
cluster with the certificates it names. About 30 s."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import ROOT, VENV_BIN, wait_for_ports

pytestmark = pytest.mark.timeout(180)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def samples() -> dict[str, str]:
    """"docs/security-tls.md#1" -> the text of that file's first python block."""
    out: dict[str, str] = {}
    for path in DOCS:
        blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.MULTILINE | re.DOTALL)
        for i, block in enumerate(blocks, 1):
            out[f"{path.relative_to(ROOT)}#{i}"] = block
    return out


def test_every_python_sample_type_checks_strictly(tmp_path: Path) -> None:
    found = samples()
    assert len(found) >= 5
    names = {}
    for label, text in found.items():
        name = re.sub(r"\W", "_", label) + ".py"
        (tmp_path / name).write_text(text)
        names[name] = label
    proc = subprocess.run([str(VENV_BIN / "python"), "-m", "mypy", "--strict", "--no-error-summary",
                           "--cache-dir", str(tmp_path / ".mypy_cache"), *names],
                          cwd=tmp_path, capture_output=True, text=True, timeout=170)
    report = proc.stdout
    for name, label in names.items():
        report = report.replace(name, label)
    assert proc.returncode == 0, report


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    from tests.security.tls_cluster import TLSCluster, make_certs

    certs = make_certs(tmp_path / "certs")
    cluster = TLSCluster(tmp_path / "cluster", 1, certs=certs)
    try:
        cluster.start()
        wait_for_ports(cluster)
        cluster.wait_for_leader(timeout=60)
        yield cluster, certs
    finally:
        cluster.stop_all()


def test_docs_samples_run(tmp_path: Path, tls_cluster: tuple[object, Path]) -> None:
    cluster, certs = tls_cluster
    found = {label: text for label, text in samples().items() if label.startswith("docs/")}
    assert any("TLSConfig" in text for text in found.values()) and len(found) >= 2
    run_dir = tmp_path / "run"
    shutil.copytree(certs, run_dir / "certs")  # the sample names certs/ca.pem, certs/client.pem, ...
    endpoints = cluster.endpoints  # type: ignore[attr-defined]
    for label, text in found.items():
        if "admin.auth" in text:  # user and role management: run against an auth cluster
            continue
        if "TLSConfig" in text:  # the sample's endpoints are make cluster TLS=1's; this cluster's instead
            text = re.sub(r'\["127\.0\.0\.1:7001", "127\.0\.0\.1:7002"\]', repr(endpoints), text)
        script = run_dir / "sample.py"
        script.write_text(text)
        proc = subprocess.run([str(VENV_BIN / "python"), str(script)], cwd=run_dir, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, f"{label} failed:\n{text}\n{proc.stderr}"


def test_docs_auth_samples_run(tmp_path: Path) -> None:
    """The samples that manage users and roles, against a one-member cluster with auth on,
    run as an admin would: the endpoint and the admin's token in the environment."""
    import os

    from coord_client import Client
    from tests.integration.harness import Cluster
    from tests.security.conftest import TOKENS, auth_options

    found = {label: text for label, text in samples().items() if "admin.auth" in text}
    assert found, "docs/security.md shows how to add users and roles"
    cluster = Cluster(tmp_path / "cluster", 1, options=auth_options(tmp_path))
    try:
        cluster.start()
        wait_for_ports(cluster)
        endpoints = ",".join(n.address for n in cluster.nodes.values())
        with Client(endpoints, token=TOKENS["root"], timeout=60) as admin:
            admin.put("docs-sample-ready", "1")  # waits for the member to elect itself
        env = {**os.environ, "COORD_ENDPOINTS": endpoints, "COORD_TOKEN": TOKENS["root"]}
        for label, text in found.items():
            script = tmp_path / "sample.py"
            script.write_text(text)
            proc = subprocess.run([str(VENV_BIN / "python"), str(script)], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=60, env=env)
            assert proc.returncode == 0, f"{label} failed:\n{text}\n{proc.stderr}"
    finally:
        cluster.stop_all()

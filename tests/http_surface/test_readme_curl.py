"""The curl examples of the README, run as written against a live member's HTTP listener
(only the address is changed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import Cluster

README = Path(__file__).resolve().parents[2] / "README.md"


def curl_block() -> str:
    text = README.read_text()
    match = re.search(r"<!-- curl-examples -->\n```sh\n(.*?)```\n<!-- /curl-examples -->", text, re.S)
    assert match, "the README lost its curl examples block"
    return match.group(1)


def test_readme_curl_examples_run(http_cluster: tuple[Cluster, dict[str, str]]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("CURL IS MISSING: the README examples did not run")
    _, urls = http_cluster
    script = curl_block().replace("HTTP=http://127.0.0.1:8080", f"HTTP={urls['n2']}")
    assert script != curl_block()
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert '"value": "aGVsbG8="' in out  # the Range found what the Put wrote
    assert re.search(r'"acquired": true, "token": "\d+"', out), out
    assert '"holders": [{"token"' in out and '"owner": "curl"' in out
    assert '"role": "RAFT_ROLE_' in out
    assert '"code": "not_found"' in out and "HTTP 404" in out

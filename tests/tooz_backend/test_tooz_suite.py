"""tooz's own functional test suite, run against a real coord cluster with the coord URL.

tooz ships its tests inside the package (tooz/tests). They take the backend from
``TOOZ_TEST_URL``; here that is ``coord://<the three members>``, and the suite runs in a
child pytest (tooz's process tests spawn interpreters that must find the driver through
the ``tooz.backends`` entry point, as an installed application would). Every test must
pass except the ones listed in EXPECTED_SKIPS, each with the reason the suite itself
gives; the ZooKeeper driver skips the same ones (README, "tooz").
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

tooz_tests = pytest.importorskip("tooz.tests", reason="tooz's test dependencies are missing: pip install -e '.[dev]'")

SUITE = ("test_coordination.py::TestAPI", "test_coordination.py::TestHook", "test_partitioner.py::TestPartitioner",
         "test_hashring.py")
"""The functional classes; test_partitioner's IPC/File subclasses rerun TestPartitioner
against the same URL, so they are left out."""

EXPECTED_SKIPS = {
    # coord's Lock is exclusive or a counting semaphore; tooz's reader/writer "shared"
    # mode is not offered (the ZooKeeper driver does not offer it either).
    "test_get_shared_lock": "shared mode is not implemented",
    "test_get_shared_lock_locking_same_lock_twice": "shared mode is not implemented",
    "test_get_shared_lock_locking_two_lock": "shared mode is not implemented",
    "test_get_lock_locking_shared_and_exclusive": "shared mode is not implemented",
    "test_get_lock_locking_exclusive_and_shared": "shared mode is not implemented",
    # The suite runs it only for the etcd3gw, memcached and Redis drivers (groups that
    # vanish by themselves); ZooKeeper skips it too.
    "test_watch_join_group_disappear": "ability to destroy groups",
}


@pytest.mark.slow
def test_tooz_functional_suite_passes_against_coord(tooz_url: str, tmp_path: Path) -> None:
    package = Path(tooz_tests.__file__).parent
    report = tmp_path / "tooz.xml"
    env = {**os.environ, "TOOZ_TEST_URL": tooz_url}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
         "--assert=plain", "--timeout=120", "-rs", f"--junitxml={report}", "--rootdir", str(tmp_path),
         *(str(package / t) for t in SUITE)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    summary = run.stdout[-3000:] + run.stderr[-2000:]
    assert report.exists(), summary
    cases = ET.parse(report).getroot().iter("testcase")
    failed, skipped, passed = [], {}, []
    for case in cases:
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif (skip := case.find("skipped")) is not None:
            skipped[name] = skip.get("message", "")
        else:
            passed.append(name)
    assert not failed, f"tooz tests failed against coord: {failed}\n{summary}"
    assert run.returncode == 0, summary
    assert set(skipped) == set(EXPECTED_SKIPS), f"skips changed: {skipped}"
    for name, why in EXPECTED_SKIPS.items():
        assert why in skipped[name], (name, skipped[name])
    assert len(passed) >= 95, f"only {len(passed)} tooz tests ran: {summary}"
    print(f"tooz suite against coord: {len(passed)} passed, {len(skipped)} skipped ({sorted(skipped)})")

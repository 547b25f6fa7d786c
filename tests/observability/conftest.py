"""Fixtures for the observability tests: the integration suite's clusters (real
coord-server processes, see tests/integration/harness.py) and their failure reports."""

from tests.integration.conftest import cluster, make_cluster, pytest_runtest_makereport

__all__ = ["cluster", "make_cluster", "pytest_runtest_makereport"]

"""Scraping a member's metrics endpoint in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Cluster, free_ports

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, labels) -> value."""


def with_metrics(cluster: Cluster) -> dict[str, str]:
    """Give every member of a not yet started ``cluster`` a metrics port; returns
    name -> metrics address."""
    ports = free_ports(len(cluster.nodes))
    addresses = {}
    for (name, node), port in zip(cluster.nodes.items(), ports):
        addresses[name] = f"127.0.0.1:{port}"
        node.args += ["--metrics-listen", addresses[name]]
    return addresses


def scrape_text(address: str, path: str = "/metrics", timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def scrape(address: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(scrape_text(address)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, /, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when absent (a counter not yet
    incremented for that label set)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum of every sample ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)

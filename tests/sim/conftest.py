"""Seed selection for the simulation tests, and failure reports that say how to replay.

Every test with a ``seed`` argument is run once per seed:

    pytest tests/sim                 each test's default seed count (@pytest.mark.seeds(N))
    pytest tests/sim --seeds 5000    seeds 0..4999 in every randomized test
    pytest tests/sim --seed 1234     exactly seed 1234 in every randomized test (replay)
    make sim SEED=1234 / make sim SEEDS=5000

A failing run reports its seed, cluster size, profile and core configuration, the replay
command, the node states and the last events before the failure.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import pytest

from .invariants import InvariantViolation
from .simulator import LivenessViolation, Simulator


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "Raft simulation (tests/sim)")
    group.addoption("--seed", type=int, default=None,
                    help="run exactly this seed in every randomized simulation test")
    group.addoption("--seeds", type=int, default=None,
                    help="run seeds 0..N-1 in every randomized simulation test")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "seeds(n): default number of simulator seeds for a test taking `seed`"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    one = metafunc.config.getoption("seed", default=None)
    many = metafunc.config.getoption("seeds", default=None)
    if one is not None:
        seeds: list[int] = [one]
    else:
        marker = metafunc.definition.get_closest_marker("seeds")
        count = many if many is not None else (marker.args[0] if marker else 100)
        seeds = list(range(count))
    metafunc.parametrize("seed", seeds, ids=[f"seed{s}" for s in seeds])


Simulate = Callable[..., Simulator]
"""The ``simulate`` fixture: ``simulate(seed, **Simulator options)`` runs one schedule."""


def failure_report(sim: Simulator, exc: BaseException) -> str:
    if isinstance(exc, InvariantViolation):
        kind = "invariant violated"
    elif isinstance(exc, LivenessViolation):
        kind = "liveness failed"
    else:
        kind = f"the core raised {type(exc).__name__}"
    lines = [
        f"{kind}: {exc}",
        f"run: {sim.describe()}",
        f"replay: make sim SEED={sim.seed}   (or: pytest tests/sim --seed {sim.seed})",
        "nodes:",
        sim.describe_nodes(),
        "last events:",
        sim.describe_recent(40),
    ]
    if not isinstance(exc, (InvariantViolation, LivenessViolation)):
        lines += ["traceback:", "".join(traceback.format_exception(exc)).rstrip()]
    return "\n".join(lines)


@pytest.fixture
def simulate() -> Simulate:
    """``simulate(seed, **options)`` runs one whole schedule, failing with a replay report."""

    def run(seed: int, **options: Any) -> Simulator:
        sim = Simulator(seed, **options)
        try:
            sim.run()
        except Exception as exc:  # noqa: BLE001 - any failure is reported with its seed
            report = failure_report(sim, exc)
        else:
            return sim
        pytest.fail(report, pytrace=False)

    return run

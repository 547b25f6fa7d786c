"""Determinism: a seed is a complete description of a run.

The same seed must give the identical event trace (every delivery, tick, disk write,
fault and client action, in order, with its time), in this process and in a fresh one
with a different string-hash seed (PYTHONHASHSEED), so a failure seen anywhere replays
everywhere with ``make sim SEED=S``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from .profiles import MEMBERSHIP, MIXED
from .simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]


def trace_digest(seed: int, profile_name: str = "mixed") -> str:
    from .profiles import PROFILES

    sim = Simulator(seed, profile=PROFILES[profile_name], record_trace=True)
    sim.run()
    assert sim.trace is not None
    return hashlib.sha256(repr(sim.trace).encode()).hexdigest()


def test_same_seed_same_trace() -> None:
    first = Simulator(11, profile=MIXED, record_trace=True).run()
    second = Simulator(11, profile=MIXED, record_trace=True).run()
    assert first.trace and len(first.trace) > 1000
    assert first.trace == second.trace
    assert first.checker.applied == second.checker.applied


def test_different_seeds_differ() -> None:
    assert trace_digest(1) != trace_digest(3)


def test_same_trace_in_another_process_with_another_hash_seed() -> None:
    """Nothing may depend on set or dict order of str/bytes keys, on id(), or on time."""
    code = (
        "import sys; from tests.sim.test_determinism import trace_digest; "
        f"print(trace_digest(5, {MEMBERSHIP.name!r}))"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True, timeout=300)
        digests.add(out.stdout.strip())
    digests.add(trace_digest(5, MEMBERSHIP.name))
    assert len(digests) == 1, digests

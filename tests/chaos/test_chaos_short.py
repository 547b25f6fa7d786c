"""A short chaos run per seed (real processes, faults, checkers): CI's regression watch.

Each run is ``python -m tests.chaos`` for ~22 s (faults for the first ~14 s), so the three
take about 1.5 minutes. ``CHAOS_SEEDS=1,2,3`` picks other seeds; ``make chaos`` runs
the long version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = [int(s) for s in os.environ.get("CHAOS_SEEDS", "101,202,303").split(",") if s.strip()]
DURATION = float(os.environ.get("CHAOS_DURATION", "22"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", SEEDS)
def test_short_chaos_run_finds_no_violation(seed: int, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--duration", str(DURATION), "--seed", str(seed),
         "--dir", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, output
    assert lines[-1].startswith("VERDICT: PASS"), f"exit {proc.returncode}\n{output[-8000:]}"
    assert proc.returncode == 0, output[-8000:]

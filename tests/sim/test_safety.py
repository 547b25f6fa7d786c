"""Randomized safety runs: every invariant of ``invariants.py`` after every event.

By default the randomized tests of tests/sim run 1,090 seeds in all (540 here, 150 each
for crashes, membership and snapshots, 100 of heavy churn); ``--seeds N`` runs N seeds in
each. Each seed is one schedule of mixed faults (loss, duplication, reordering, long delays,
symmetric and one-way partitions, isolated leaders, pauses, crashes at any point of the
persist cycle, snapshots and compaction, leadership transfers, membership changes, client
proposals and ReadIndex requests), then healing and a liveness check. Even seeds run
3-node clusters, odd seeds 5-node clusters. (The real member's runs, test_real_node.py,
took the time of 60 of these seeds, so ``make test`` stays as fast.) Raft §5.2–§5.4, §6.4, thesis §4.1 and §10.2.1.
"""

from __future__ import annotations

import pytest

from .conftest import Simulate
from .profiles import CRASHES, MIXED


@pytest.mark.seeds(540)
def test_mixed_faults_keep_raft_safe(seed: int, simulate: Simulate) -> None:
    """Raft §5: election safety, log matching, leader completeness, state machine safety,
    committed entries never lost, ReadIndex read points; then liveness after healing."""
    simulate(seed, profile=MIXED)


@pytest.mark.seeds(150)
def test_crashes_at_every_point_of_the_persist_cycle(seed: int, simulate: Simulate) -> None:
    """Crashes during a Ready's disk write (a torn tail: a prefix of its records
    survives), between the write and sending what depended on it, and at random: only
    what was persisted survives (Raft §5, Figure 2)."""
    simulate(seed, profile=CRASHES)

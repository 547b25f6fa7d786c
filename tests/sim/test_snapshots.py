"""Snapshots and log compaction under faults and crashes (Raft §7, thesis §5).

Nodes snapshot their applied state every few entries and compact their logs, so lagging,
partitioned, restarted and newly added nodes must be brought up to date with
InstallSnapshot. A snapshot's state (a digest of the applied prefix) and membership are
checked against what every other node applied at that index.
"""

from __future__ import annotations

import pytest

from .conftest import Simulate
from .profiles import SNAPSHOTS


@pytest.mark.seeds(150)
def test_snapshots_under_faults_and_crashes_keep_raft_safe(seed: int, simulate: Simulate) -> None:
    """§7: a snapshot replaces a committed prefix exactly; nothing applied is undone."""
    simulate(seed, profile=SNAPSHOTS)


def test_snapshot_profile_really_sends_snapshots(simulate: Simulate) -> None:
    """The profile exercises what it claims: InstallSnapshot happens in most runs."""
    sent = [simulate(seed, profile=SNAPSHOTS).stats["snapshots_sent"] for seed in range(10)]
    assert sum(1 for n in sent if n) >= 7, sent

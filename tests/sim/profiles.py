"""Fault profiles: how often each kind of trouble happens during a simulated run.

A profile gives per-tick probabilities for the world's events (client traffic, crashes,
partitions, membership changes, ...). The simulator draws every concrete choice from its
seeded rng, so a profile plus a seed is one exact, replayable schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    """Probabilities are per simulated tick (one tick = ``Simulator.TICK`` time units)."""

    name: str
    ticks: int = 250
    """Length of the faulty phase in ticks; then faults heal and liveness is checked."""
    propose: float = 0.35
    """A client sends a batch of 1–4 commands to a node it believes is the leader."""
    read: float = 0.08
    """A client asks a random node for a ReadIndex read point."""
    crash: float = 0.012
    """A random running node crashes (loses everything not persisted)."""
    restart: float = 0.08
    """A crashed node restarts from its storage."""
    crash_leader: float = 0.0
    """The current leader crashes (it restarts like any crashed node)."""
    bounce: float = 0.005
    """A random running node crashes and is restarted within a few ticks (a supervisor)."""
    crash_in_write: float = 0.004
    """Per Ready: crash right before, or right after, the disk write."""
    partition: float = 0.012
    """A new partition: a symmetric split, one-way cuts, or the leader isolated."""
    heal: float = 0.04
    """All partitions heal."""
    lossy: float = 0.015
    """The network's loss, duplication and long-delay rates are redrawn."""
    pause: float = 0.006
    """A node stops for a while (a long GC pause or SIGSTOP): no ticks, no processing."""
    transfer: float = 0.01
    """The leader is asked to transfer leadership to a random voter."""
    membership: float = 0.0
    """The operator adds a learner, promotes a learner, demotes or removes a member."""
    slow_disk: float = 0.1
    """Probability that one disk write takes several ticks."""
    snapshot_every: tuple[int, int] = (8, 60)
    """A node snapshots and compacts once this many entries (drawn from the range per
    run) were applied since its last snapshot."""
    max_nodes_added: int = 3
    """At most this many nodes join during a run."""

    def with_(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


MIXED = Profile("mixed", membership=0.012)
"""Everything at once, the default for the randomized safety runs."""

MEMBERSHIP = Profile(
    "membership", membership=0.05, crash=0.01, partition=0.01, transfer=0.015,
    snapshot_every=(5, 30), max_nodes_added=4,
)
"""Frequent single-server changes (learners, promotion, removal) under faults."""

SNAPSHOTS = Profile(
    "snapshots", snapshot_every=(2, 12), crash=0.02, restart=0.06, crash_in_write=0.01,
    partition=0.015, membership=0.01,
)
"""Aggressive compaction so that lagging and restarted nodes need InstallSnapshot."""

CRASHES = Profile(
    "crashes", crash=0.04, restart=0.12, crash_in_write=0.02, partition=0.005, transfer=0.02,
)
"""Frequent crashes at every point of the persist cycle."""

CHURN = Profile(
    "churn", propose=0.5, crash=0.02, bounce=0.04, partition=0.03, heal=0.06, pause=0.01,
    transfer=0.03, crash_in_write=0.01,
)
"""Leadership changes all the time: isolated leaders, quick crash-restarts, transfers."""

CALM = Profile(
    "calm", crash=0.0, bounce=0.0, crash_in_write=0.0, partition=0.0, heal=0.0, lossy=0.0,
    pause=0.0, transfer=0.0, membership=0.0, slow_disk=0.0,
)
"""No faults at all: a baseline, and the liveness reference."""

SCRIPTED = Profile(
    "scripted", propose=0.0, read=0.0, crash=0.0, restart=0.0, bounce=0.0, crash_in_write=0.0,
    partition=0.0, heal=0.0, lossy=0.0, pause=0.0, transfer=0.0, membership=0.0, slow_disk=0.0,
)
"""Nothing happens unless a test makes it happen (scripted scenarios)."""

PROFILES = {p.name: p for p in (MIXED, MEMBERSHIP, SNAPSHOTS, CRASHES, CHURN, CALM, SCRIPTED)}

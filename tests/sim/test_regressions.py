"""Regressions: core bugs the simulator found, each pinned by a scripted scenario.

Seeds shift whenever the simulator draws its random numbers differently, so each bug is
kept here as the smallest deterministic sequence of core calls that showed it, with the
simulator seeds that found it noted for the record.
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftCore,
    Role,
    Snapshot,
    SnapshotMeta,
)

from .invariants import InvariantViolation
from .profiles import SCRIPTED
from .ready import persist
from .simulator import Simulator

MT = MessageType


def test_snapshot_received_while_a_ready_is_out_keeps_its_membership() -> None:
    """Bug 1 (found by the membership profile, seed 5 at the time; caught by the check
    that a snapshot's conf_state matches what its applied entries imply).

    A follower handed out committed CONF_CHANGE entries in a Ready, then received a
    snapshot (whose membership it adopts at once) before the driver called ``advance``.
    ``advance`` then re-applied the older changes on top of the snapshot's membership:
    a voter the snapshot had removed came back (here node 3), so the follower counted a
    dead node towards its quorums, and ``conf_state()`` (what the application stores in
    its next snapshot) no longer matched the applied index.
    """
    storage = MemoryStorage()
    core = RaftCore(Config(id=2), storage, random.Random(1))
    core.bootstrap([1, 2, 3])
    rd = core.ready()  # the three ADD_NODE entries, to persist
    persist(storage, rd)
    core.advance(rd)
    rd = core.ready()  # ... and now to apply
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]

    # Before the driver finishes that Ready, the leader (term 2) sends a snapshot taken
    # after node 3 was removed.
    removed_3 = ConfState(voters=frozenset({1, 2}))
    snap = Snapshot(SnapshotMeta(index=10, term=2, conf_state=removed_3), data=b"state@10")
    core.step(Message(type=MT.SNAP, to=2, from_=1, term=2, snapshot=snap))
    assert core.voters == {1, 2}

    persist(storage, rd)
    core.advance(rd)  # applies ADD_NODE 1, 2, 3: older than the snapshot
    assert core.voters == {1, 2}, "an old CONF_CHANGE undid the snapshot's membership"
    # conf_state() is the membership as of the applied index (3), not the snapshot's.
    assert core.conf_state() == ConfState(voters=frozenset({1, 2, 3}))

    rd = core.ready()
    assert rd.snapshot is snap
    persist(storage, rd)
    core.advance(rd)
    assert core.conf_state() == removed_3
    assert core.voters == {1, 2}
    assert core.status().conf_state == removed_3

    # Later changes apply on top of the snapshot's membership as usual.
    entry_11 = ConfChange(ConfChangeType.ADD_LEARNER, 4).encode()
    core.step(Message(type=MT.APP, to=2, from_=1, term=2, index=10, log_term=2, commit=11,
                      entries=(Entry(term=2, index=11, type=EntryType.CONF_CHANGE, data=entry_11),)))
    for _ in range(2):
        rd = core.ready()
        persist(storage, rd)
        core.advance(rd)
    assert core.conf_state() == ConfState(voters=frozenset({1, 2}), learners=frozenset({4}))
    assert core.learners == {4}


def founder_loses_its_bootstrap(rebootstrap: bool) -> Simulator:
    """Node 1 crashes before its bootstrap entries reach the disk and restarts empty; it
    then learns the log from the leader one entry at a time, and is cut off right after
    applying entry 1 (ADD_NODE 1): in that membership it is the only voter."""
    sim = Simulator(0, n_nodes=3, profile=SCRIPTED, config=dict(
        election_tick=100, heartbeat_tick=1, max_entries_per_msg=1))
    sim.rebootstrap = rebootstrap
    sim.crash(1)  # at time 0: the bootstrap Ready was not persisted yet
    assert sim.nodes[1].storage.last_index() == 0
    sim.run_until(2 * sim.TICK)  # nodes 2 and 3 apply their bootstrap entries
    sim.restart(sim.nodes[1])
    sim.campaign(3)
    node1 = sim.nodes[1]
    assert sim.run_until_true(lambda: node1.sm.applied >= 1, 20)
    sim.network.partition([1], [2, 3])
    sim.campaign(1)
    sim.run_until(sim.now + 5 * sim.TICK)
    return sim


def test_a_founder_that_lost_its_bootstrap_bootstraps_again() -> None:
    """Bug 2 (found by the churn profile, seed 2404): a driver contract, not a core bug.

    A founding member that crashed before persisting its bootstrap entries, restarted
    without bootstrapping again, replays ADD_NODE 1, 2, 3 one at a time from the leader.
    After ADD_NODE 1 alone it is the only voter of its membership, elects itself and
    overwrites the committed bootstrap entries 2 and 3. The driver must bootstrap again
    whenever a founding member's storage is empty (``coord_server.node`` checks the
    storage; the simulator's restart now does too)."""
    sim = founder_loses_its_bootstrap(rebootstrap=True)
    assert sim.nodes[1].core is not None and sim.nodes[1].core.voters == {1, 2, 3}
    assert sim.nodes[1].core.role != Role.LEADER


def test_without_bootstrapping_again_the_founder_elects_itself_alone() -> None:
    """What Bug 2 looks like when the contract is broken: the checker reports it."""
    with pytest.raises(InvariantViolation, match="leader completeness: node 1"):
        founder_loses_its_bootstrap(rebootstrap=False)


def test_a_restart_after_a_write_torn_after_the_snapshot_keeps_the_snapshot_committed() -> None:
    """Bug 3 (found once the simulator tore writes: crashes profile, seeds 90, 103, 123).

    A follower's Ready carried a snapshot from the leader and a new hard state. The WAL
    writes the snapshot record first; the crash cut the write before the hard state, so
    the disk held the snapshot (index 10) with the previous hard state (commit 5). The
    core refused to start ("persisted commit 5 is outside the log [10, 10]: storage is
    damaged"), though nothing was damaged: a snapshot's index is committed by definition.
    """
    storage = MemoryStorage()
    storage.set_hard_state(HardState(term=2, vote=1, commit=5))
    members = ConfState(voters=frozenset({1, 2, 3}))
    storage.apply_snapshot(Snapshot(SnapshotMeta(index=10, term=2, conf_state=members), b"state@10"))
    core = RaftCore(Config(id=2), storage, random.Random(1), applied=10)
    assert core.log.committed == 10
    assert core.conf_state() == members
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 10  # written back


def test_a_persisted_commit_past_the_log_is_still_refused() -> None:
    storage = MemoryStorage()
    storage.append([Entry(term=1, index=1), Entry(term=1, index=2)])
    storage.set_hard_state(HardState(term=1, vote=0, commit=3))
    with pytest.raises(AssertionError, match="storage is damaged"):
        RaftCore(Config(id=1), storage, random.Random(1))

"""Single-server membership changes under faults (Raft thesis §4.1–§4.2).

The operator adds learners (new nodes that start with empty storage and no bootstrap),
promotes caught-up learners with ADD_NODE, demotes and removes voters (the leader
included) and learners, while partitions, loss, crashes and leadership transfers go on.
Removed nodes are shut down once their removal is committed. Every invariant is checked
after every event, and the final membership must commit new commands on every member.
"""

from __future__ import annotations

import pytest

from coord_server.raft import ConfChangeType, Role

from .conftest import Simulate
from .profiles import MEMBERSHIP


@pytest.mark.seeds(150)
def test_membership_changes_under_faults_keep_raft_safe(seed: int, simulate: Simulate) -> None:
    """Thesis §4.1: one change at a time keeps old and new majorities overlapping."""
    simulate(seed, profile=MEMBERSHIP)


def test_membership_profile_really_changes_membership(simulate: Simulate) -> None:
    """The profile exercises what it claims: nodes join, get promoted, and leave."""
    joined = removed = 0
    for seed in range(10):
        sim = simulate(seed, profile=MEMBERSHIP)
        joined += sim.nodes_added
        removed += sum(node.retired for node in sim.nodes.values())
    assert joined >= 10 and removed >= 3, (joined, removed)


def test_a_new_learner_catches_up_and_is_promoted(simulate: Simulate) -> None:
    """Thesis §4.2.1: a learner receives the log (or a snapshot) before it counts."""
    from .profiles import CALM
    from .simulator import Simulator

    sim = Simulator(0, n_nodes=3, profile=CALM.with_(ticks=60))
    sim.run_until(30 * sim.TICK)
    leader = sim.leader()
    assert leader is not None and leader.core is not None
    for _ in range(10):
        sim.propose(4)
        sim.run_until(sim.now + sim.TICK)
    new = sim.add_node()
    sim.run_until(sim.now + 30 * sim.TICK)
    leader = sim.leader()
    assert leader is not None and leader.core is not None
    assert new.id in leader.core.learners
    assert new.sm.applied == leader.sm.applied  # caught up through the log or a snapshot
    sim.change_membership(ConfChangeType.ADD_NODE, new.id)
    sim.run_until(sim.now + 30 * sim.TICK)
    for node in sim.nodes.values():
        assert node.core is not None and new.id in node.core.voters
    assert sum(core.role == Role.LEADER for core in sim.cores.values()) == 1
    sim.heal()
    sim.check_liveness()

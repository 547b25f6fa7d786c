"""Liveness: once faults heal, a leader is elected and new commands commit everywhere.

Every randomized run ends with this check (``Simulator.check_liveness``: a leader within
``LEADER_WITHIN`` ticks, then new commands applied on every live member within
``COMMIT_WITHIN`` ticks plus the backlog). The tests here add heavy leader churn and
scripted situations with tighter bounds: the election timeout is 10 ticks, randomized
to [10, 20). Raft §5.2, thesis §9.6 (PreVote) and §6.2 (CheckQuorum).
"""

from __future__ import annotations

import pytest

from coord_server.raft import Role

from .conftest import Simulate
from .profiles import CALM, CHURN, SCRIPTED
from .simulator import SimNode, Simulator

ELECTION = 10
"""The simulated election timeout in ticks (Config.election_tick)."""


@pytest.mark.seeds(100)
def test_leader_and_commits_after_heavy_churn_heals(seed: int, simulate: Simulate) -> None:
    """§5.2: randomized timeouts elect a leader once the network and nodes are healthy."""
    sim = simulate(seed, profile=CHURN)
    assert sim.stats["leader_after_heal"] <= Simulator.LEADER_WITHIN


def test_a_calm_cluster_holds_exactly_one_election() -> None:
    """No faults, no spurious elections: one leader for the whole run (DESIGN: Timing)."""
    for seed in range(5):
        sim = Simulator(seed, profile=CALM).run()
        assert list(sim.checker.leaders) == [2], (seed, sim.checker.leaders)


def cluster(n_nodes: int = 3, **config: object) -> Simulator:
    params: dict[str, object] = dict(
        election_tick=ELECTION, heartbeat_tick=1, pre_vote=True, check_quorum=True
    )
    params.update(config)
    return Simulator(0, n_nodes=n_nodes, profile=SCRIPTED, config=params)


def settled_leader(sim: Simulator) -> int:
    """Wait for the first election (within 3 election timeouts); the leader's id."""
    leader: SimNode | None = sim.run_until_true(sim.leader, 3 * ELECTION)
    assert leader is not None, sim.describe_nodes()
    sim.run_until(sim.now + ELECTION * sim.TICK)
    return leader.id


@pytest.mark.parametrize("n_nodes", [3, 5])
def test_an_isolated_leader_is_replaced_and_steps_down(n_nodes: int) -> None:
    """§5.2 and thesis §6.2: the majority elects a new leader within a few election
    timeouts; the isolated one, lacking a quorum, steps down (CheckQuorum)."""
    sim = cluster(n_nodes)
    old = settled_leader(sim)
    others = [i for i in sim.nodes if i != old]
    sim.network.partition([old], others)
    start = sim.now

    def new_leader() -> bool:
        leader = sim.leader()
        return leader is not None and leader.id != old and leader.core.term > sim.nodes[old].core.term  # type: ignore[union-attr]

    assert sim.run_until_true(new_leader, 4 * ELECTION), sim.describe_nodes()
    assert sim.now - start <= 4 * ELECTION * sim.TICK
    old_core = sim.nodes[old].core
    assert old_core is not None
    assert sim.run_until_true(lambda: old_core.role != Role.LEADER, 3 * ELECTION)
    sim.heal()
    sim.check_liveness()


def test_a_majority_crash_recovers_after_restart() -> None:
    """§5.2: with a majority down nothing commits; once it restarts, a leader is elected
    and commands commit."""
    sim = cluster(5)
    leader = settled_leader(sim)
    down = [i for i in sim.nodes if i != leader][:3]
    for i in down:
        sim.crash(i)
    sim.propose_at(leader, 2)
    commit = max(c.log.committed for c in sim.cores.values())
    sim.run_until(sim.now + 5 * ELECTION * sim.TICK)
    assert max(c.log.committed for c in sim.cores.values()) == commit
    for i in down:
        sim.restart(sim.nodes[i])
    start = sim.now
    assert sim.run_until_true(sim._stable_leader, 4 * ELECTION), sim.describe_nodes()
    assert sim.now - start <= 4 * ELECTION * sim.TICK
    sim.check_liveness()


def test_a_rejoining_partitioned_follower_does_not_disrupt_the_leader() -> None:
    """Thesis §9.6: with PreVote a follower cut off for many election timeouts does not
    raise its term, so when it returns the leader keeps leading in the same term."""
    sim = cluster(5)
    leader = settled_leader(sim)
    term = sim.nodes[leader].core.term  # type: ignore[union-attr]
    loner = next(i for i in sim.nodes if i != leader)
    sim.network.partition([loner], [i for i in sim.nodes if i != loner])
    sim.run_until(sim.now + 10 * ELECTION * sim.TICK)
    sim.network.heal()
    sim.run_until(sim.now + 5 * ELECTION * sim.TICK)
    assert sim.leader() is sim.nodes[leader]
    assert all(c.term == term for c in sim.cores.values()), sim.describe_nodes()
    sim.check_liveness()

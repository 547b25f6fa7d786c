"""Log compaction and InstallSnapshot (Raft §7) on the controllable network.

The network snapshots a node's toy state machine at its applied index and compacts the
log up to it (``Network.compact``, or automatically with ``auto_compact``); a follower the
leader can no longer serve from its log gets a SNAP and restores from it.
"""

from __future__ import annotations

import random

import pytest

from coord_server.raft import Config, MessageType, ProgressState, RaftCore, Role

from .network import Network, crafted_storage, state_at

MT = MessageType
ELECTION = 10


def test_lagging_follower_catches_up_through_snapshot() -> None:
    """A follower that was away while the leader compacted its log past the follower's
    last entry gets the leader's snapshot (one SNAP), restores its state machine from it,
    and then follows the log again. §7"""
    net = Network(3, random.Random(1))
    lead = net.wait_leader()
    net.agree(b"early")
    lagging = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(lagging)
    for i in range(30):
        net.agree(f"v{i}".encode(), expected=2)
    snap_index = net.compact(lead)
    assert net.core(lead).log.first_index() == snap_index + 1
    net.recover()
    net.trace = []
    net.tick(count=2)
    assert [m.type for m in net.trace].count(MT.SNAP) == 1
    assert net.nodes[lagging].storage.snapshot().meta.index == snap_index
    net.agree(b"after")
    expected = [b"early"] + [f"v{i}".encode() for i in range(30)] + [b"after"]
    for node in (1, 2, 3):
        assert net.nodes[node].sm.values() == expected
    status = net.core(net.leader() or lead).status()
    assert status.progress[lagging].state == ProgressState.REPLICATE


def test_lost_snapshot_is_retried() -> None:
    """A SNAP lost on the way is reported failed by the transport; the leader goes back
    to probing and sends the snapshot again once the follower answers. §7"""
    net = Network(3, random.Random(2))
    lead = net.wait_leader()
    lagging = next(n for n in (1, 2, 3) if n != lead)
    net.isolate(lagging)
    for i in range(10):
        net.agree(f"v{i}".encode(), expected=2)
    net.compact(lead)
    net.recover()
    net.ignore(MT.SNAP)
    net.tick(count=2 * ELECTION)
    assert net.nodes[lagging].sm.applied < net.nodes[lead].sm.applied
    assert net.core(lead).status().progress[lagging].state == ProgressState.PROBE
    net.recover()
    net.tick(count=3)
    assert net.nodes[lagging].sm.values() == net.nodes[lead].sm.values()


def test_restart_from_snapshot() -> None:
    """A node whose log was compacted restarts from its snapshot plus the log after it;
    the state machine comes back whole. §7"""
    net = Network(3, random.Random(3))
    lead = net.wait_leader()
    for i in range(10):
        net.agree(f"a{i}".encode())
    for node in (1, 2, 3):
        net.compact(node)
    for i in range(5):
        net.agree(f"b{i}".encode())
    values = net.nodes[lead].sm.values()
    for node in (1, 2, 3):
        net.crash(node)
    for node in (1, 2, 3):
        net.restart(node)
        assert net.nodes[node].sm.values() == values
    net.wait_leader(max_ticks=6 * ELECTION)
    net.agree(b"c")


def test_snapshot_to_follower_holding_the_snapshot_entry_and_a_divergent_suffix() -> None:
    """Regression: a follower that already holds the snapshot's last entry only
    fast-forwards its commit index; it must then acknowledge no more than that index. It
    used to answer with its last index, vouching for a divergent suffix from an old term,
    which let the leader count it toward committing entries it never held (the network
    flags the state machine safety violation that followed). §7, §5.3"""
    voters = [1, 2, 3]
    leader_terms = [1, 1, 3, 3, 3]
    follower_terms = [1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]  # an old leader's uncommitted run
    storages = [
        crafted_storage(voters, leader_terms, term=3, commit=2),
        crafted_storage(voters, leader_terms, term=3, commit=2),
        crafted_storage(voters, follower_terms, term=3, commit=1),
    ]
    # The leader compacted its log through index 2, the last entry both histories share.
    storages[0].create_snapshot(2, storages[0].initial_state()[1], state_at(storages[0], 2))
    storages[0].compact(2)
    cores = [
        RaftCore(Config(id=i, pre_vote=False, check_quorum=False), s, random.Random(i))
        for i, s in enumerate(storages, start=1)
    ]
    net = Network(cores, random.Random(0))
    net.msg_hook = lambda m: not (m.to == 3 and m.type == MT.APP)  # keep 3's old run for now
    net.campaign(1)
    assert net.core(1).role == Role.LEADER
    net.cut(1, 2)  # from now on the leader can count only on node 3
    for i in range(6):
        net.propose(1, f"new{i}".encode())
    assert net.core(1).log.last_index() == net.core(3).log.last_index() == 12
    # As after a rejected APP in the replicate state whose acks were lost: the leader
    # knows nothing matching on node 3 and falls back below its compacted prefix.
    pr = net.core(1).progress[3]
    pr.become_probe()
    pr.next = 2
    net.msg_hook = None
    net.trace = []
    net.tick(count=3)  # heartbeat -> probe -> SNAP -> ...
    assert MT.SNAP in [m.type for m in net.trace]
    assert net.core(1).log.committed == 12  # with node 3's real copy of the new entries
    for i in range(3, 13):
        assert net.core(3).log.term(i) == net.core(1).log.term(i)
    net.recover()
    net.tick(count=3)
    net.check_log_matching()


@pytest.mark.parametrize("seed", range(6))
def test_snapshots_under_unreliable_network_and_crashes(seed: int) -> None:
    """Frequent compaction (every few entries), an unreliable network, small APPs and
    nodes crashing and restarting: followers keep catching up through snapshots and
    every committed entry survives everywhere. §7, §5.4"""
    rng = random.Random(seed)
    net = Network(5, rng, max_entries_per_msg=2)
    net.auto_compact = 4
    net.set_unreliable(drop=0.1, duplicate=0.05, delay=0.1, reorder=True)
    for step in range(200):
        lead = net.leader()
        if lead is not None:
            try:
                net.propose(lead, f"s{step}".encode())
            except Exception:  # noqa: BLE001 - ProposalDroppedError family only
                pass
        roll = rng.random()
        alive = net.alive()
        if roll < 0.06 and len(alive) > 3:
            net.crash(rng.choice(alive))
        elif roll < 0.15 and len(alive) < 5:
            net.restart(rng.choice([n for n in range(1, 6) if n not in alive]))
        elif roll < 0.2:
            victim = rng.randrange(1, 6)
            net.isolate(victim)
        elif roll < 0.3:
            net.recover()
        net.tick(count=rng.randrange(1, 4))
    net.set_reliable()
    net.recover()
    for node in range(1, 6):
        if not net.nodes[node].alive:
            net.restart(node)
    net.agree(b"final", max_ticks=30 * ELECTION)
    assert net.delivered[MT.SNAP] > 0, "the scenario never exercised InstallSnapshot"
    committed = [(i, e.data) for i, e in sorted(net.applied.items()) if e.data and e.type == 0]
    for node in range(1, 6):
        assert net.nodes[node].sm.applied == max(net.applied)
        assert net.nodes[node].sm.data == committed
    net.check_log_matching()

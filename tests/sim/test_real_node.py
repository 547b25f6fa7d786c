"""The real member under the simulator (realnode.py): node.py's Ready loop with the real
StateMachine and DiskStorage, in virtual time, under partitions, crashes (unsynced writes
lost, the last one torn), slow disks and failed fsyncs; every invariant after every step.
Then the bugs each of node.py's tricks could have, planted (plants.py), and caught."""

from __future__ import annotations

import pytest

from . import plants
from .invariants import InvariantViolation
from .realnode import FsyncGate, NodeWorld, OverBudget


def run(seed: int, **options: object) -> NodeWorld:
    world = NodeWorld(seed, **options)  # type: ignore[arg-type]
    try:
        return world.run()
    except InvariantViolation as err:
        pytest.fail(f"{err}\nrun: {world.describe()}\nreplay: pytest tests/sim/test_real_node.py --seed {seed}\n"
                    + "\n".join(world.recent), pytrace=False)


def caught(seeds: range, **options: object) -> tuple[int, InvariantViolation]:
    """The first seed whose run violates an invariant, and the violation."""
    for seed in seeds:
        try:
            NodeWorld(seed, **options).run()  # type: ignore[arg-type]
        except InvariantViolation as err:
            return seed, err
        except OverBudget:
            continue
    pytest.fail(f"no seed in {seeds} caught the planted bug")


@pytest.mark.seeds(6)
def test_real_members_keep_every_invariant(seed: int) -> None:
    world = run(seed)
    assert world.counts["acked"] > 0 and world.counts["reads_checked"] > 0, world.describe()


def test_a_seed_is_one_run() -> None:
    a, b = run(7), run(7)
    assert (a.loop.steps, a.loop.time(), a.counts, sorted(a.acked)) == (b.loop.steps, b.loop.time(), b.counts, sorted(b.acked))


def test_a_member_whose_fsync_fails_stops_and_the_cluster_goes_on() -> None:
    world = run(1, fsync_failures=True)
    assert world.counts["stopped"] >= 2, world.describe()


def test_the_simulator_catches_acknowledging_before_fsync() -> None:
    seed, err = caught(range(2, 8), storage_hook=plants.ack_before_fsync)
    assert "leader completeness" in str(err) or "lost" in str(err) or "acknowledged" in str(err), err


def test_the_simulator_catches_applying_out_of_order() -> None:
    seed, err = caught(range(0, 3), node_class=plants.ApplyOutOfOrder)
    assert "applied entry" in str(err), err


def test_the_simulator_catches_a_member_going_on_after_a_failed_fsync() -> None:
    seed, err = caught(range(0, 6), storage_hook=plants.swallow_failed_fsync, fsync_failures=True)
    assert isinstance(err, FsyncGate), err

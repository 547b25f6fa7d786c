"""The Network checks Raft's safety at every step with the Simulator's checker: plant the
bugs a driver or a disk could have and show each is caught at once."""

from __future__ import annotations

import dataclasses
import random

import pytest

from coord_server.raft import Ready

from .network import InvariantViolation, Network


def test_applying_committed_entries_out_of_order_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(3, random.Random(1))
    net.wait_leader()
    real = Network._complete

    def reversed_apply(self: Network, n: object, rd: Ready) -> None:
        real(self, n, dataclasses.replace(rd, committed_entries=list(reversed(rd.committed_entries))))  # type: ignore[arg-type]

    monkeypatch.setattr(Network, "_complete", reversed_apply)
    with pytest.raises(InvariantViolation, match="applied index"):
        for i in range(5):
            net.propose_batch(net.leader() or 1, [f"a{i}".encode(), f"b{i}".encode()])
            net.tick()


def test_a_committed_entry_changed_on_disk_is_caught() -> None:
    """A follower whose disk returns another command at a committed index (a corrupted
    log) applies a different state there after a restart: state machine safety."""
    net = Network(3, random.Random(2))
    lead = net.wait_leader()
    for i in range(5):
        net.agree(f"v{i}".encode())
    follower = next(n for n in net.alive() if n != lead)
    net.crash(follower)
    storage = net.nodes[follower].storage
    index = next(e.index for e in storage.entries(storage.first_index(), storage.last_index() + 1) if e.data == b"v2")
    position = index - storage._entries[0].index
    storage._entries[position] = dataclasses.replace(storage._entries[position], data=b"not v2")
    with pytest.raises(InvariantViolation, match="state machine safety"):
        net.restart(follower)
        net.agree(b"after")


def test_two_leaders_of_one_term_are_caught() -> None:
    net = Network(3, random.Random(3))
    lead = net.wait_leader()
    other = next(n for n in net.alive() if n != lead)
    core = net.core(other)
    core._become_candidate()
    core.term = net.core(lead).term  # a candidate that wrongly believes it won the leader's term
    with pytest.raises(InvariantViolation, match="election safety"):
        core.become_leader()
        net.process(other)

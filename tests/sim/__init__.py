"""Deterministic simulation of coord's Raft core: seeded faults, invariants after every event.

    simulator.py     Simulator(seed): the event loop, the per-node driver (the Ready
                     contract), faults, client traffic, membership changes, liveness check
    network.py       links: loss, duplication, delay, reordering, partitions
    statemachine.py  the simulated application: a digest of the applied log
    invariants.py    Raft's safety properties, checked after every event
    profiles.py      how often each fault happens (mixed, crashes, membership, ...)
    test_*.py        randomized runs per profile, checks of the checker (broken cores
                     must be caught), liveness, determinism, regressions

Everything in a run comes from one ``random.Random(seed)``; replay a failing seed with
``make sim SEED=S`` or ``pytest tests/sim --seed S`` (``--seeds N`` runs N seeds per test).
"""

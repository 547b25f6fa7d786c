"""Tests of the pure Raft core (coord_server/raft): paper claims, unit tests, and named
scenarios on the controllable network in ``network.py``."""

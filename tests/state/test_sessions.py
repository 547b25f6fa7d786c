"""Exactly-once sessions (Raft thesis §6.3; common.proto "Exactly-once")."""

from __future__ import annotations

import grpc

from coord.v1 import kv_pb2, lease_pb2
from coord_server.state import StateMachine

from .driver import Driver

FP = grpc.StatusCode.FAILED_PRECONDITION


def put(key: bytes, value: bytes = b"") -> kv_pb2.PutRequest:
    return kv_pb2.PutRequest(key=key, value=value)


def test_a_retry_gets_the_first_result_without_reapplying() -> None:
    d = Driver()
    first = d.cmd("c1", 1, put=put(b"a", b"1"))
    d.put(b"other")
    again = d.cmd("c1", 1, put=put(b"a", b"1"))
    assert again == first and again.put.header.revision == 2
    assert d.sm.revision == 3 and d.get(b"a").kvs[0].version == 1


def test_a_retried_grant_returns_the_same_lease() -> None:
    d = Driver()
    grant = lease_pb2.LeaseGrantRequest(ttl=5)
    first = d.ok(d.cmd("c", 7, lease_grant=grant))
    again = d.ok(d.cmd("c", 7, lease_grant=grant))
    assert first.id == again.id and d.sm.lease_ids() == [(first.id, 5)]


def test_errors_are_remembered_too() -> None:
    d = Driver()
    first = d.cmd("c", 1, lease_revoke=lease_pb2.LeaseRevokeRequest(id=5))
    assert d.code(first) == grpc.StatusCode.NOT_FOUND
    d.grant(lease_id=5)
    assert d.cmd("c", 1, lease_revoke=lease_pb2.LeaseRevokeRequest(id=5)) == first
    assert d.sm.lease_ids() == [(5, 10)]


def test_lower_sequence_fails_and_higher_applies() -> None:
    d = Driver()
    d.cmd("c", 5, put=put(b"a", b"5"))
    assert d.code(d.cmd("c", 4, put=put(b"a", b"4"))) == FP
    assert d.value(b"a") == b"5"
    d.ok(d.cmd("c", 9, put=put(b"a", b"9")))
    assert d.value(b"a") == b"9"
    assert d.code(d.cmd("c", 5, put=put(b"a", b"5"))) == FP, "only the latest result is kept"


def test_clients_are_independent_and_no_id_means_no_dedupe() -> None:
    d = Driver()
    d.cmd("c1", 1, put=put(b"a"))
    d.cmd("c2", 1, put=put(b"a"))
    d.cmd("", 1, put=put(b"a"))
    d.cmd("", 1, put=put(b"a"))
    assert d.get(b"a").kvs[0].version == 4


def test_the_result_given_out_is_a_copy() -> None:
    d = Driver()
    first = d.cmd("c", 1, put=put(b"a"))
    first.put.header.member_id = 99  # what a service does
    again = d.cmd("c", 1, put=put(b"a"))
    assert again.put.header.member_id == 0
    again.put.header.member_id = 77
    assert d.cmd("c", 1, put=put(b"a")).put.header.member_id == 0


def test_client_id_too_long() -> None:
    d = Driver()
    assert d.code(d.cmd("x" * 129, 1, put=put(b"a"))) == grpc.StatusCode.INVALID_ARGUMENT
    d.ok(d.cmd("x" * 128, 1, put=put(b"a")))


def test_idle_sessions_are_evicted_by_index() -> None:
    """A session is forgotten once more than `retention` entries were applied after its
    last command; every entry counts, no-ops included."""
    d = Driver(StateMachine(session_retention=10))
    d.cmd("old", 3, put=put(b"a"))  # index 1
    for _ in range(9):  # indexes 2..10
        d.sm.apply(d.index + 1, b"")
    # Index 11: 10 entries after index 1, not more than 10: still known.
    assert d.code(d.cmd("old", 2, put=put(b"a"))) == FP
    # Index 12: 11 entries after: forgotten, so the retry is applied anew.
    again = d.cmd("old", 3, put=put(b"a"))
    assert again.put.header.revision == 3 and d.get(b"a").kvs[0].version == 2
    assert len(d.sm._sessions) == 1


def test_eviction_keeps_recently_refreshed_sessions() -> None:
    d = Driver(StateMachine(session_retention=3))
    d.cmd("a", 1, put=put(b"k"))  # 1
    d.cmd("b", 1, put=put(b"k"))  # 2
    d.cmd("a", 2, put=put(b"k"))  # 3: refreshes a
    d.sm.apply(4, b"")
    d.sm.apply(5, b"")  # 5: b (last 2) is 3 behind: kept
    assert len(d.sm._sessions) == 2
    d.sm.apply(6, b"")  # 6: b is 4 behind: evicted; a (3) is 3 behind: kept
    assert [c for c, _ in d.sm._sessions.items()] == ["a"]


def test_sessions_survive_snapshots() -> None:
    d = Driver()
    first = d.cmd("c", 1, put=put(b"a"))
    restored = Driver(StateMachine.restore(d.sm.snapshot()))
    assert restored.cmd("c", 1, put=put(b"a")) == first
    assert restored.code(restored.cmd("c", 0, put=put(b"a"))) == FP

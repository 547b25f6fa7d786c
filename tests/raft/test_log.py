"""RaftLog: the persisted log plus the unstable tail, and its commit/apply bookkeeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coord_server.raft import CompactedError, Entry, MemoryStorage, UnavailableError
from coord_server.raft.log import RaftLog
from coord_server.raft.messages import ConfState, Snapshot, SnapshotMeta


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + i, data=f"{start + i}@{t}".encode()) for i, t in enumerate(terms)]


def log_with(stored: list[Entry], unstable: list[Entry] = ()) -> RaftLog:  # type: ignore[assignment]
    storage = MemoryStorage()
    storage.append(stored)
    log = RaftLog(storage)
    if unstable:
        log.append(list(unstable))
    return log


def test_reads_span_storage_and_unstable() -> None:
    log = log_with(entries(1, 1, 2), entries(2, 3, start=4))
    assert log.first_index() == 1
    assert log.last_index() == 5
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]
    assert log.term(4) == 2 and log.term(5) == 3
    assert log.stable_last_index() == 3


def test_unstable_suffix_replaces_stored_one() -> None:
    """Rule 2: a newer leader's entries in unstable win over stored ones."""
    log = log_with(entries(1, 1, 1))
    log.append(entries(2, 2, start=2))
    assert [e.term for e in log.all_entries()] == [1, 2, 2]
    assert log.stable_last_index() == 1  # stored 2..3 are about to be overwritten


def test_slice_respects_byte_limit_but_returns_at_least_one() -> None:
    log = log_with(entries(1, 1, 1, 1))
    assert len(log.slice(1, 5, max_bytes=1)) == 1
    assert len(log.slice(1, 5, max_bytes=len(b"1@1") * 2)) == 2


def test_out_of_range_reads_raise_clear_errors() -> None:
    log = log_with(entries(1, 1))
    with pytest.raises(UnavailableError):
        log.term(3)
    with pytest.raises(UnavailableError):
        log.slice(1, 4)


def test_find_conflict() -> None:
    log = log_with(entries(1, 2, 3))
    assert log.find_conflict(entries(1, 2, 3)) == 0
    assert log.find_conflict(entries(2, 3, start=2)) == 0
    assert log.find_conflict(entries(2, 4, start=2)) == 3
    assert log.find_conflict(entries(3, 4, start=3)) == 4  # new entry beyond the log


def test_find_conflict_by_term_skips_whole_terms() -> None:
    """Fast back-off: the hint jumps to the last index whose term is <= the leader's."""
    log = log_with(entries(1, 1, 4, 4, 4, 5, 5))
    assert log.find_conflict_by_term(7, 3) == (2, 1)
    assert log.find_conflict_by_term(7, 4) == (5, 4)
    assert log.find_conflict_by_term(100, 5) == (7, 5)
    assert log.find_conflict_by_term(7, 0) == (0, 0)


def test_maybe_append_rejects_mismatch_and_appends_on_match() -> None:
    log = log_with(entries(1, 1, 2))
    assert log.maybe_append(3, 1, 3, tuple(entries(3, start=4))) is None
    assert log.maybe_append(3, 2, 10, tuple(entries(3, start=4))) == 4
    assert log.committed == 4  # min(leader commit, last new index)
    assert [e.term for e in log.all_entries()] == [1, 1, 2, 3]


def test_maybe_append_never_truncates_committed_entries() -> None:
    log = log_with(entries(1, 1, 1))
    log.commit_to(3)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 3, tuple(entries(2, 2, start=2)))


def test_maybe_append_ignores_already_present_entries() -> None:
    """A duplicated old APP must not truncate entries that follow it (§5.3)."""
    log = log_with(entries(1, 1, 1, 1))
    assert log.maybe_append(1, 1, 0, tuple(entries(1, start=2))) == 2
    assert log.last_index() == 4


def test_commit_only_counts_current_term_entries() -> None:
    """§5.4.2: an old-term entry never commits by counting replicas."""
    log = log_with(entries(1, 2, 2))
    assert not log.maybe_commit(1, term=2)
    assert log.committed == 0
    assert log.maybe_commit(3, term=2)
    assert log.committed == 3


def test_committed_entries_wait_for_local_persistence() -> None:
    """Rule 3: nothing is applied before it is durable here."""
    log = log_with(entries(1, 1), entries(1, 1, start=3))
    log.commit_to(4)
    assert [e.index for e in log.next_committed_entries()] == [1, 2]
    log.stable_to(4, 1)
    log.storage.append(entries(1, 1, start=3))  # type: ignore[attr-defined]
    assert [e.index for e in log.next_committed_entries()] == [1, 2, 3, 4]


def test_stable_to_ignores_a_replaced_entry() -> None:
    log = log_with([], entries(1, 1, 1))
    log.append(entries(2, start=3))
    log.stable_to(3, 1)  # the entry at 3 is now term 2: not what was persisted
    assert log.unstable.offset == 1


def test_restore_from_snapshot() -> None:
    log = log_with(entries(1, 1))
    snap = Snapshot(meta=SnapshotMeta(index=10, term=3, conf_state=ConfState(frozenset({1}))), data=b"x")
    log.restore(snap)
    assert log.first_index() == 11
    assert log.last_index() == 10
    assert log.term(10) == 3
    assert log.committed == 10
    with pytest.raises(CompactedError):
        log.term(9)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 4), st.booleans()), max_size=25))
def test_log_equals_a_plain_list_model(ops: list[tuple[int, int, bool]]) -> None:
    """Appending at random points (with or without persisting in between) keeps the log
    equal to a plain list that does the same truncate-and-extend."""
    storage = MemoryStorage()
    log = RaftLog(storage)
    model: list[int] = []  # model[i] = term of index i + 1
    term = 1
    for at, count, persist in ops:
        at = min(at, len(model) + 1)
        term += 1
        new = [Entry(term=term, index=at + i) for i in range(count)]
        log.append(new)
        model = model[: at - 1] + [term] * count
        if persist:
            storage.append(list(log.unstable.entries))
            if log.unstable.entries:
                last = log.unstable.entries[-1]
                log.stable_to(last.index, last.term)
        assert [e.term for e in log.all_entries()] == model
        assert log.last_index() == len(model)

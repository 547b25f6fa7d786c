"""Majority arithmetic checked against deliberately dumb twins (etcd quorum/quick_test.go)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coord_server.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result

voter_sets = st.sets(st.integers(min_value=1, max_value=9), min_size=1, max_size=7)


def dumb_committed_index(voters: set[int], match: dict[int, int]) -> int:
    """The largest index that more than half of the voters have reached, by brute force."""
    candidates = {0} | {match.get(v, 0) for v in voters}
    best = 0
    for index in candidates:
        holders = sum(1 for v in voters if match.get(v, 0) >= index)
        if holders * 2 > len(voters):
            best = max(best, index)
    return best


@settings(max_examples=1000)
@given(voter_sets, st.data())
def test_committed_index_matches_brute_force(voters: set[int], data: st.DataObject) -> None:
    match = data.draw(
        st.dictionaries(st.integers(min_value=1, max_value=12), st.integers(0, 50), max_size=12)
    )
    assert committed_index(voters, match) == dumb_committed_index(voters, match)


@settings(max_examples=1000)
@given(voter_sets, st.data())
def test_vote_result_matches_brute_force(voters: set[int], data: st.DataObject) -> None:
    votes = data.draw(st.dictionaries(st.integers(min_value=1, max_value=12), st.booleans(), max_size=12))
    granted = sum(1 for v in voters if votes.get(v) is True)
    refused = sum(1 for v in voters if votes.get(v) is False)
    undecided = len(voters) - granted - refused
    if granted * 2 > len(voters):
        expected = VoteResult.WON
    elif (granted + undecided) * 2 <= len(voters):
        expected = VoteResult.LOST
    else:
        expected = VoteResult.PENDING
    assert vote_result(voters, votes) == expected


def test_majority_sizes() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


def test_votes_of_non_voters_do_not_count() -> None:
    """A learner's (or stranger's) grant never decides an election."""
    assert vote_result({1, 2, 3}, {1: True, 4: True, 5: True}) == VoteResult.PENDING


def test_has_quorum_ignores_non_voters() -> None:
    assert not has_quorum({1, 2, 3}, {1, 4, 5})
    assert has_quorum({1, 2, 3}, {1, 3})

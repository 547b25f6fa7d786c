"""Majority arithmetic as pure functions: what a set of voters has committed or decided.

Learners never appear here; callers pass voters only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum


class VoteResult(IntEnum):
    """The outcome of an election so far."""

    PENDING = 0
    """Neither a majority of grants nor of rejections yet."""
    WON = 1
    """A majority granted."""
    LOST = 2
    """A majority refused: the election cannot be won."""


def majority(n_voters: int) -> int:
    """The smallest number of voters that is more than half of ``n_voters``."""
    return n_voters // 2 + 1


def committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """The highest index stored on a majority of ``voters`` (0 if there are none).

    Sort the match indexes in descending order; the majority-th one is on at least a
    majority of voters. A voter missing from ``match`` counts as having nothing.
    """
    indexes = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not indexes:
        return 0
    return indexes[majority(len(indexes)) - 1]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    """Whether ``votes`` (voter -> granted) already decide an election among ``voters``."""
    voter_list = list(voters)
    need = majority(len(voter_list))
    granted = sum(1 for v in voter_list if votes.get(v) is True)
    refused = sum(1 for v in voter_list if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if refused >= need or len(voter_list) - refused < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[int], active: Iterable[int]) -> bool:
    """Whether the nodes in ``active`` form a majority of ``voters``."""
    voter_set = set(voters)
    return len(voter_set & set(active)) >= majority(len(voter_set))

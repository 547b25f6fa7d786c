"""Single-server membership changes (Raft thesis §4.1, §4.2.1).

A change takes effect on a node when its CONF_CHANGE entry is *applied* there (as in etcd),
so only committed changes ever count. Safety with one change at a time rests on two rules
the leader enforces when proposing:

Rule 1: at most one change is in flight: a new one is refused until the previous one
        is applied on the leader.
Rule 2: a new leader proposes no change until the no-op entry of its own term is applied
        (the fix for the single-server change bug described on the raft-dev list, 2015).

Learners receive the log but never count toward a quorum and never campaign. A learner is
promoted with ADD_NODE once the server layer has seen it catch up.
"""

from __future__ import annotations

from .messages import ConfChange, ConfChangeType, ConfState


class MembershipError(ValueError):
    """A proposed change is not allowed; the message says why."""


def apply_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The membership after ``change``. Total: applying a change that changes nothing (adding
    an existing voter, removing a stranger) returns ``conf`` unchanged."""
    voters = set(conf.voters)
    learners = set(conf.learners)
    node = change.node_id
    if change.type == ConfChangeType.ADD_NODE:
        learners.discard(node)
        voters.add(node)
    elif change.type == ConfChangeType.ADD_LEARNER:
        voters.discard(node)
        learners.add(node)
    elif change.type == ConfChangeType.REMOVE_NODE:
        voters.discard(node)
        learners.discard(node)
    return ConfState(voters=frozenset(voters), learners=frozenset(learners))


def check_change(conf: ConfState, change: ConfChange) -> None:
    """Refuse a change that would leave the cluster unable to ever elect a leader."""
    if change.node_id <= 0:
        raise MembershipError(f"node id must be positive, got {change.node_id}")
    after = apply_change(conf, change)
    if not after.voters:
        raise MembershipError(
            f"{change.type.name} of node {change.node_id} would leave no voters; "
            "add another voter first"
        )

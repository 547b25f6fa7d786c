"""A leader's COMMIT messages wait briefly for an append to carry them
(coord_server/commit_notices.py): the rules on their own, then through a real cluster."""

from __future__ import annotations

import asyncio

import pytest

from coord.v1 import kv_pb2
from coord_server.commit_notices import CommitNotices
from coord_server.raft import Message, MessageType as MT

from .conftest import eventually

DELAY = 0.01


def commit(to: int, index: int, term: int = 3) -> Message:
    return Message(type=MT.COMMIT, to=to, from_=1, term=term, index=index, log_term=term, commit=index)


def append(to: int, commit_index: int, term: int = 3) -> Message:
    return Message(type=MT.APP, to=to, from_=1, term=term, index=commit_index, log_term=term, commit=commit_index)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def __call__(self, messages: list[Message]) -> None:
        self.sent.extend(messages)


async def settle() -> None:
    await asyncio.sleep(DELAY * 5)


async def test_a_commit_waits_then_goes():
    sent = Recorder()
    notices = CommitNotices(sent, DELAY)
    heartbeat = Message(type=MT.HEARTBEAT, to=3, from_=1, term=3, commit=4)
    assert notices.filter([commit(2, 5), heartbeat]) == [heartbeat]
    assert sent.sent == [] and notices.held == 1
    await settle()
    assert sent.sent == [commit(2, 5)] and notices.held == 0


async def test_an_append_that_carries_the_commit_replaces_it():
    sent = Recorder()
    notices = CommitNotices(sent, DELAY)
    notices.filter([commit(2, 5), commit(3, 5)])
    carrier = append(2, 6)
    assert notices.filter([carrier]) == [carrier]
    assert notices.held == 1  # follower 3 got nothing that carries it
    await settle()
    assert sent.sent == [commit(3, 5)]


@pytest.mark.parametrize("other", [
    append(2, 4),                                    # an older commit index
    append(2, 5, term=4),                            # another term
    Message(type=MT.VOTE, to=2, from_=1, term=3),    # carries no commit index
])
async def test_what_does_not_carry_the_commit_leaves_it_held(other):
    sent = Recorder()
    notices = CommitNotices(sent, DELAY)
    notices.filter([commit(2, 5)])
    assert notices.filter([other]) == [other]
    await settle()
    assert sent.sent == [commit(2, 5)]


async def test_the_newest_commit_per_follower_wins():
    sent = Recorder()
    notices = CommitNotices(sent, DELAY)
    notices.filter([commit(2, 5)])
    notices.filter([commit(2, 7)])
    await settle()
    assert sent.sent == [commit(2, 7)]


async def test_drop_forgets_everything_held():
    sent = Recorder()
    notices = CommitNotices(sent, DELAY)
    notices.filter([commit(2, 5), commit(3, 5)])
    notices.drop()
    await settle()
    assert sent.sent == [] and notices.held == 0


@pytest.mark.cluster(size=3)
async def test_serial_puts_send_followers_no_commits_yet_they_apply_the_last(cluster):
    """One client's puts, each sent once the last is answered: every append carries the
    previous commit, so the leader sends no COMMIT while puts keep coming; once they
    stop, the followers still apply the last put (from the held COMMITs, or a heartbeat)."""
    leader = cluster.leader()
    node = leader.node
    node._commit_notices.delay = 0.5  # far longer than a put takes, even on busy CI
    held, sent = [], []
    filter_, send = node._commit_notices.filter, node.transport.send

    def counting_filter(messages):
        held.extend(m for m in messages if m.type == MT.COMMIT)
        return filter_(messages)

    def counting_send(messages):
        sent.extend(m for m in messages if m.type == MT.COMMIT)
        send(messages)

    node._commit_notices.filter = counting_filter
    node.transport.send = counting_send
    try:
        kv = cluster.kv(leader)
        for i in range(20):
            await kv.Put(kv_pb2.PutRequest(key=b"serial", value=b"%d" % i), timeout=10)
        assert len(held) >= 20, f"the core sent only {len(held)} COMMITs: the test shows nothing"
        assert len(sent) <= 2, f"{len(sent)} COMMITs went out while puts kept coming"
        target = node.core.log.committed
        await eventually(lambda: all(f.node.core.log.applied >= target for f in cluster.followers()),
                         timeout=10, what="the followers to apply the last put")
    finally:
        node._commit_notices.filter = filter_
        node.transport.send = send

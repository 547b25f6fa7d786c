"""A state machine replaced by an installed snapshot is freed when dropped.

``StateMachine.restore`` freezes what is alive (gc_policy.py Rule 1), the state being
replaced included, and a frozen object is never collected as part of a cycle: a state
that referred to itself (bound methods kept in its attributes) stayed in memory, a
second copy of the store, until the policy's next complete collection."""

from __future__ import annotations

import gc
import weakref

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2, lease_pb2, lock_pb2
from coord_server.state import StateMachine


def test_the_replaced_state_is_freed_though_frozen() -> None:
    old = StateMachine.restore(_filled_state().snapshot())  # frozen, as at a member's start
    installed = StateMachine.restore(_filled_state().snapshot())  # the install freezes again
    gone = weakref.ref(old)
    del old  # the node drops the state it replaced
    gc.collect()  # no unfreeze: the frozen set is not collected
    assert gone() is None
    assert installed.range(kv_pb2.RangeRequest(key=b"k0001")).count == 1


def _filled_state() -> StateMachine:
    sm = StateMachine()
    commands = [
        command_pb2.Command(lease_grant=lease_pb2.LeaseGrantRequest(id=7, ttl=100)),
        *(command_pb2.Command(put=kv_pb2.PutRequest(key=b"k%04d" % i, value=b"v", lease=7 * (i % 2))) for i in range(200)),
        command_pb2.Command(lock_acquire=lock_pb2.LockAcquireRequest(name="l", lease=7)),
    ]
    for index, cmd in enumerate(commands, start=1):
        assert not sm.apply(index, cmd.SerializeToString()).HasField("error")
    return sm

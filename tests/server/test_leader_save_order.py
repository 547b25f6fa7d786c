"""A leader lets its peer tasks write the appends of a Ready before it saves its own copy
(node.py ``_handle_ready``): a small save is an fsync on the event loop, and the appends
must not wait for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coord.v1 import kv_pb2

pytestmark = pytest.mark.cluster(size=3)


async def test_peer_tasks_run_before_the_leaders_save(cluster):
    leader = cluster.leader()
    node = leader.node
    loop = asyncio.get_running_loop()
    # A stand-in for the peer tasks' wake-up: scheduled when messages are handed over,
    # it has run by the time the save starts only if the node yielded in between.
    handed: list[bool] = []
    saves: list[tuple[int, bool]] = []  # (entries, the hand-over before it had run)

    send, save_async = node.transport.send, node.storage.save_async

    def recording_send(messages: list[Any]) -> None:
        if any(m.entries for m in messages):
            handed.append(False)
            slot = len(handed) - 1

            def ran() -> None:
                handed[slot] = True

            loop.call_soon(ran)
        send(messages)

    async def recording_save(hard_state: Any, entries: list[Any], snapshot: Any = None, **kw: Any) -> None:
        if entries and handed:
            saves.append((len(entries), handed[-1]))
        await save_async(hard_state, entries, snapshot, **kw)

    node.transport.send = recording_send
    node.storage.save_async = recording_save
    try:
        for i in range(20):
            await cluster.kv(leader).Put(kv_pb2.PutRequest(key=b"k%d" % i, value=b"v"), timeout=10)
    finally:
        node.transport.send = send
        node.storage.save_async = save_async
    assert saves, "the leader saved no entries after sending appends"
    assert all(ran for _, ran in saves), f"saves that started before the peer tasks ran: {saves}"

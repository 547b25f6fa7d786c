"""WatchHub without gRPC: a fake node whose state machine is replaced by a snapshot, as a
follower's is when it installs one. Watchers must see every revision exactly once across
the replacement, or be cancelled with compacted_revision when the gap was compacted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from coord.raft.v1 import command_pb2
from coord.v1 import kv_pb2
from coord_server.errors import Unavailable
from coord_server.node import NodeConfig
from coord_server.state import StateMachine
from coord_server.watch import WatchHub


class FakeNode:
    def __init__(self) -> None:
        self.config = NodeConfig(node_id=1, cluster_id=2)
        self.core = SimpleNamespace(term=3)
        self.state = StateMachine()
        self.leader_id = 1
        self.failed = None
        self._state_listeners: list[Any] = []
        self.index = 0

    def add_state_listener(self, fn: Any) -> None:
        self._state_listeners.append(fn)

    def install(self, state: StateMachine) -> None:
        self.state = state
        for fn in self._state_listeners:
            fn(state)


def apply(state: StateMachine, **op: Any) -> command_pb2.CommandResult:
    index = state.applied_index + 1
    result = state.apply(index, command_pb2.Command(**op).SerializeToString())
    assert result is not None and result.WhichOneof("result") != "error", result
    return result


def put(state: StateMachine, key: bytes, value: bytes = b"v") -> int:
    return apply(state, put=kv_pb2.PutRequest(key=key, value=value)).put.header.revision


class FakeContext:
    def __init__(self) -> None:
        self.out: asyncio.Queue[kv_pb2.WatchResponse] = asyncio.Queue()

    async def write(self, response: kv_pb2.WatchResponse) -> None:
        await self.out.put(response)


class Requests:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[kv_pb2.WatchRequest | None] = asyncio.Queue()

    def create(self, **kw: Any) -> None:
        self.queue.put_nowait(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(**kw)))

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> kv_pb2.WatchRequest:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


async def read(ctx: FakeContext) -> kv_pb2.WatchResponse:
    return await asyncio.wait_for(ctx.out.get(), 5)


async def collect_events(ctx: FakeContext, n: int) -> dict[int, list[int]]:
    """watch_id -> the mod revisions received, until ``n`` events arrived."""
    got: dict[int, list[int]] = {}
    total = 0
    while total < n:
        resp = await read(ctx)
        assert not resp.canceled, resp
        got.setdefault(resp.watch_id, []).extend(e.kv.mod_revision for e in resp.events)
        total += len(resp.events)
    return got


def test_snapshot_replacement_keeps_every_revision_once() -> None:
    async def main() -> None:
        node = FakeNode()
        hub = WatchHub(node)
        for i in range(3):
            put(node.state, b"a%d" % i)  # revisions 2..4
        ctx, reqs = FakeContext(), Requests()
        task = asyncio.create_task(hub.serve(reqs, ctx))
        reqs.create(key=b"a", range_end=b"b", watch_id=1)  # from now on
        reqs.create(key=b"a", range_end=b"b", start_revision=3, watch_id=2)  # history first
        reqs.create(key=b"a1", watch_id=3, prev_kv=True)  # one key
        assert (await read(ctx)).created
        assert (await read(ctx)).created
        assert await collect_events(ctx, 2) == {2: [3, 4]}
        assert (await read(ctx)).created

        # The leader moves on; this member then installs the leader's snapshot.
        leader_state = StateMachine.restore(node.state.snapshot())
        more = [put(leader_state, b"a%d" % (i % 2), b"x%d" % i) for i in range(4)]  # 5..8
        put(leader_state, b"zz")  # 9, unwatched
        node.install(StateMachine.restore(leader_state.snapshot()))
        got = await collect_events(ctx, 4 + 4 + 2)
        assert got == {1: more, 2: more, 3: [6, 8]}
        # ... and it follows the new state live.
        live = put(node.state, b"a1", b"live")
        got = await collect_events(ctx, 3)
        assert got == {1: [live], 2: [live], 3: [live]}
        reqs.queue.put_nowait(None)
        await hub.close()
        task.cancel()

    asyncio.run(main())


def test_snapshot_over_a_compacted_gap_cancels_with_compacted_revision() -> None:
    async def main() -> None:
        node = FakeNode()
        hub = WatchHub(node)
        put(node.state, b"k")  # 2
        ctx, reqs = FakeContext(), Requests()
        task = asyncio.create_task(hub.serve(reqs, ctx))
        reqs.create(key=b"k", watch_id=5)
        reqs.create(key=b"other", watch_id=6)
        assert (await read(ctx)).created
        assert (await read(ctx)).created
        leader_state = StateMachine.restore(node.state.snapshot())
        for i in range(4):
            put(leader_state, b"k", b"%d" % i)  # 3..6
        apply(leader_state, compact=kv_pb2.CompactRequest(revision=5))
        node.install(StateMachine.restore(leader_state.snapshot()))
        responses = [await read(ctx), await read(ctx)]
        by_id = {r.watch_id: r for r in responses}
        assert by_id[5].canceled and by_id[5].compacted_revision == 5
        assert by_id[6].canceled and by_id[6].compacted_revision == 5
        assert hub.watcher_count == 0
        await hub.close()
        with_error = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(with_error[0], Unavailable)

    asyncio.run(main())


def test_leaderless_member_ends_streams() -> None:
    async def main() -> None:
        node = FakeNode()
        hub = WatchHub(node, leaderless_timeout=0.1)
        ctx, reqs = FakeContext(), Requests()
        task = asyncio.create_task(hub.serve(reqs, ctx))
        reqs.create(key=b"k")
        assert (await read(ctx)).created
        node.leader_id = 0
        result = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        assert isinstance(result[0], Unavailable) and "no leader" in str(result[0])
        assert hub.watcher_count == 0

    asyncio.run(main())


def test_leaderless_member_ends_observe_and_ring_watch_feeds() -> None:
    """CoordHub's one clock fails every Observe / Ring Watch feed of a member that has
    had no leader for leaderless_timeout, and a feed waiting for its next state wakes."""
    from coord_server.coord_hub import CoordHub

    async def main() -> None:
        node = FakeNode()
        hub = CoordHub(node, leaderless_timeout=0.1)
        observed, ring = hub.observe("e"), hub.watch_ring("r", 0)
        await hub.next(observed)  # the current (empty) state comes first
        await hub.next(ring)
        node.leader_id = 0
        results = await asyncio.wait_for(asyncio.gather(hub.next(observed), hub.next(ring), return_exceptions=True), 5)
        assert all(isinstance(r, Unavailable) and "no leader" in str(r) for r in results), results
        await hub.close()

    asyncio.run(main())


def test_a_new_feed_is_not_failed_by_a_leaderless_time_seen_before_the_clock_stopped() -> None:
    """The clock stops with the last feed: a leaderless spell it saw then must not end a
    feed opened much later, at the first tick of a new leaderless spell."""
    from coord_server.coord_hub import CoordHub

    async def main() -> None:
        node = FakeNode()
        hub = CoordHub(node, leaderless_timeout=1.5)  # a tick every 0.5 s
        first = hub.observe("e")
        await hub.next(first)
        node.leader_id = 0
        await asyncio.sleep(0.7)  # a tick sees the member leaderless since now
        hub.close_feed(first)  # the clock stops
        await asyncio.sleep(1.8)  # longer than leaderless_timeout, unseen
        fresh = hub.observe("e")
        await hub.next(fresh)
        await asyncio.sleep(0.7)  # a tick, well within leaderless_timeout
        assert fresh.failure is None, fresh.failure
        await hub.close()

    asyncio.run(main())

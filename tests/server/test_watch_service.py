"""KV.Watch over a real gRPC stream: creation, history replay, live events, prev_kv,
filters, cancel, compacted starts, progress, per-revision grouping, slow watchers."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coord.v1 import common_pb2, kv_pb2

from .conftest import eventually

PUT = common_pb2.EVENT_TYPE_PUT
DELETE = common_pb2.EVENT_TYPE_DELETE


class Watch:
    """One Watch stream, with helpers that read with a generous timeout."""

    def __init__(self, kv):
        self.call = kv.Watch()

    async def send(self, **create) -> None:
        await self.call.write(kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(**create)))

    async def create(self, **create) -> kv_pb2.WatchResponse:
        await self.send(**create)
        resp = await self.read()
        assert resp.created, resp
        return resp

    async def cancel(self, watch_id: int) -> None:
        await self.call.write(kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=watch_id)))

    async def progress(self) -> None:
        await self.call.write(kv_pb2.WatchRequest(progress_request=kv_pb2.WatchProgressRequest()))

    async def read(self, timeout: float = 10.0) -> kv_pb2.WatchResponse:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert resp is not grpc.aio.EOF, "the stream ended"
        return resp

    async def events(self, n: int, watch_id: int | None = None) -> list[common_pb2.Event]:
        """Read responses until ``n`` events arrived (for ``watch_id`` if given)."""
        out: list[common_pb2.Event] = []
        while len(out) < n:
            resp = await self.read()
            assert not resp.canceled, resp
            if watch_id is None or resp.watch_id == watch_id:
                out.extend(resp.events)
        assert len(out) == n, out
        return out

    def close(self) -> None:
        self.call.cancel()


async def put(kv, key: bytes, value: bytes = b"v", **kw) -> int:
    return (await kv.Put(kv_pb2.PutRequest(key=key, value=value, **kw))).header.revision


async def test_live_events_and_header(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    created = await w.create(key=b"a")
    assert created.watch_id != 0 and created.header.revision == 1
    assert created.header.member_id == cluster.node.id
    await put(kv, b"b")  # not watched
    rev = await put(kv, b"a", b"1")
    resp = await w.read()
    assert resp.watch_id == created.watch_id and not resp.created
    assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in resp.events] == [(PUT, b"a", b"1", rev)]
    assert resp.header.revision == rev
    assert not resp.events[0].HasField("prev_kv")  # not asked for
    await kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"a"))
    resp = await w.read()
    assert resp.events[0].type == DELETE and resp.events[0].kv.key == b"a"
    assert resp.events[0].kv.mod_revision == rev + 1
    w.close()


async def test_history_replay_then_live_without_gaps(cluster):
    kv = cluster.kv()
    revs = [await put(kv, b"p/%d" % i, b"%d" % i) for i in range(5)]
    await put(kv, b"q", b"other")
    w = Watch(kv)
    created = await w.create(key=b"p/", range_end=b"p0", start_revision=revs[1])
    assert created.header.revision == revs[1] - 1
    history = await w.events(4)
    assert [e.kv.mod_revision for e in history] == revs[1:]
    more = [await put(kv, b"p/x%d" % i) for i in range(3)]
    live = await w.events(3)
    assert [e.kv.mod_revision for e in live] == more
    w.close()


async def test_replay_concurrent_with_writes_has_no_gaps_or_duplicates(cluster):
    kv = cluster.kv()
    stop = asyncio.Event()
    written: list[int] = []

    async def writer():
        i = 0
        while not stop.is_set():
            written.append(await put(kv, b"w/%d" % (i % 7), b"%d" % i))
            i += 1

    task = asyncio.create_task(writer())
    await eventually(lambda: len(written) >= 20, what="some writes")
    w = Watch(kv)
    await w.create(key=b"w/", range_end=b"w0", start_revision=2)
    await eventually(lambda: len(written) >= 60, what="more writes")
    stop.set()
    await task
    seen = await w.events(len(written))
    assert [e.kv.mod_revision for e in seen] == written
    w.close()


async def test_prev_kv_and_filters(cluster):
    kv = cluster.kv()
    await put(kv, b"k", b"old")
    w = Watch(kv)
    with_prev = (await w.create(key=b"k", prev_kv=True)).watch_id
    no_put = (await w.create(key=b"k", filters=[kv_pb2.WATCH_FILTER_TYPE_NO_PUT])).watch_id
    no_delete = (await w.create(key=b"k", filters=[kv_pb2.WATCH_FILTER_TYPE_NO_DELETE])).watch_id
    await put(kv, b"k", b"new")
    await kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"k"))
    got: dict[int, list[common_pb2.Event]] = {with_prev: [], no_put: [], no_delete: []}
    while len(got[with_prev]) < 2 or len(got[no_put]) < 1 or len(got[no_delete]) < 1:
        resp = await w.read()
        got[resp.watch_id].extend(resp.events)
    assert [(e.type, e.prev_kv.value) for e in got[with_prev]] == [(PUT, b"old"), (DELETE, b"new")]
    assert [e.type for e in got[no_put]] == [DELETE]
    assert [e.type for e in got[no_delete]] == [PUT]
    assert not got[no_delete][0].HasField("prev_kv")
    w.close()


async def test_all_events_of_a_revision_in_one_response(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    created = await w.create(key=b"t/", range_end=b"t0")
    txn = kv_pb2.TxnRequest(
        success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"t/%d" % i, value=b"x")) for i in range(10)]
    )
    rev = (await kv.Txn(txn)).header.revision
    resp = await w.read()
    assert resp.watch_id == created.watch_id
    assert len(resp.events) == 10 and {e.kv.mod_revision for e in resp.events} == {rev}
    assert [e.kv.key for e in resp.events] == [b"t/%d" % i for i in range(10)]
    w.close()


async def test_cancel(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    a = (await w.create(key=b"a")).watch_id
    b = (await w.create(key=b"b")).watch_id
    await w.cancel(a)
    resp = await w.read()
    assert resp.watch_id == a and resp.canceled and resp.cancel_reason == ""
    await put(kv, b"a")
    rev = await put(kv, b"b")
    resp = await w.read()
    assert resp.watch_id == b and resp.events[0].kv.mod_revision == rev  # nothing for a
    await w.cancel(12345)
    resp = await w.read()
    assert resp.canceled and resp.watch_id == 12345 and "no watcher" in resp.cancel_reason
    w.close()


async def test_creation_errors_cancel_in_band(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    await w.send(key=b"")
    resp = await w.read()
    assert resp.created and resp.canceled and "empty" in resp.cancel_reason
    await w.send(key=b"x" * 4097)
    resp = await w.read()
    assert resp.canceled and "4096" in resp.cancel_reason
    await w.send(key=b"a", filters=[kv_pb2.WATCH_FILTER_TYPE_UNSPECIFIED])
    resp = await w.read()
    assert resp.canceled and "filter" in resp.cancel_reason
    ok = await w.create(key=b"a", watch_id=7)
    assert ok.watch_id == 7 and not ok.canceled
    await w.send(key=b"b", watch_id=7)
    resp = await w.read()
    assert resp.watch_id == 7 and resp.canceled and "in use" in resp.cancel_reason
    # the stream and its first watcher go on
    rev = await put(kv, b"a")
    resp = await w.read()
    assert resp.watch_id == 7 and resp.events[0].kv.mod_revision == rev
    w.close()


async def test_compacted_start_revision(cluster):
    kv = cluster.kv()
    for i in range(5):
        await put(kv, b"c", b"%d" % i)  # revisions 2..6
    await kv.Compact(kv_pb2.CompactRequest(revision=5))
    w = Watch(kv)
    await w.send(key=b"c", start_revision=3)
    resp = await w.read()
    assert resp.created and resp.canceled and resp.compacted_revision == 5
    assert "compacted" in resp.cancel_reason
    # right after the compaction is fine
    created = await w.create(key=b"c", start_revision=6)
    assert not created.canceled
    events = await w.events(1)
    assert events[0].kv.mod_revision == 6 and events[0].kv.value == b"4"
    w.close()


async def test_future_start_revision(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    created = await w.create(key=b"f", start_revision=4)
    assert created.header.revision == 1
    await put(kv, b"f", b"2")
    await put(kv, b"f", b"3")
    rev = await put(kv, b"f", b"4")
    events = await w.events(1)
    assert events[0].kv.mod_revision == rev == 4
    w.close()


async def test_progress_request(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    await w.progress()  # no watchers yet: one response for the stream
    resp = await w.read()
    assert resp.watch_id == -1 and resp.header.revision == 1
    a = (await w.create(key=b"a")).watch_id
    b = (await w.create(key=b"b")).watch_id
    rev = await put(kv, b"zz")  # watched by neither
    await w.progress()
    got = {}
    for _ in range(2):
        resp = await w.read()
        assert not resp.events and not resp.created and not resp.canceled
        got[resp.watch_id] = resp.header.revision
    assert got == {a: rev, b: rev}
    w.close()


@pytest.mark.cluster(progress_interval=0.2)
async def test_progress_notify_when_idle(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    quiet = await w.create(key=b"a")  # no progress_notify: never notified
    notified = await w.create(key=b"b", progress_notify=True)
    rev = await put(kv, b"other")
    resp = await w.read()
    assert resp.watch_id == notified.watch_id and not resp.events
    assert resp.header.revision == rev
    resp = await w.read()  # and again after another idle interval
    assert resp.watch_id == notified.watch_id and resp.header.revision == rev
    assert quiet.watch_id != notified.watch_id
    w.close()


@pytest.mark.cluster(max_pending_events=4, max_pending_bytes=1 << 30, max_response_bytes=64 * 1024)
async def test_slow_watcher_is_cancelled_not_buffered(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    slow = (await w.create(key=b"s/", range_end=b"s0")).watch_id
    value = b"x" * (256 * 1024)
    revs = [await put(kv, b"s/%d" % i, value) for i in range(60)]  # 15 MiB, never read meanwhile
    assert cluster.members[0].hub.watcher_count == 0  # cancelled, not holding 15 MiB
    seen: list[int] = []
    while True:
        resp = await w.read()
        if resp.canceled:
            break
        seen.extend(e.kv.mod_revision for e in resp.events)
    assert resp.watch_id == slow and "fell too far behind" in resp.cancel_reason
    assert seen == revs[: len(seen)] and len(seen) < len(revs)  # in order, no gaps
    assert f"from revision {revs[len(seen)]}" in resp.cancel_reason
    w.close()


async def test_watch_stream_ends_when_client_cancels(cluster):
    kv = cluster.kv()
    hub = cluster.members[0].hub
    w = Watch(kv)
    await w.create(key=b"a")
    await w.create(key=b"b", range_end=b"c")
    assert hub.watcher_count == 2
    w.close()
    await eventually(lambda: hub.watcher_count == 0, what="watchers dropped with their stream")


async def test_progress_never_claims_events_not_yet_sent(cluster):
    kv = cluster.kv()
    w = Watch(kv)
    await w.create(key=b"r/", range_end=b"r0")
    stop = asyncio.Event()
    written: list[int] = []

    async def writer():
        i = 0
        while not stop.is_set():
            written.append(await put(kv, b"r/%d" % (i % 5)))
            i += 1

    async def asker():
        while not stop.is_set():
            await w.progress()
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(asker())]
    log: list[tuple[str, int]] = []
    while len([x for x in log if x[0] == "event"]) < 80:
        resp = await w.read()
        if resp.events:
            log.extend(("event", e.kv.mod_revision) for e in resp.events)
        else:
            log.append(("progress", resp.header.revision))
    stop.set()
    await asyncio.gather(*tasks)
    all_events = {r for kind, r in log if kind == "event"} | set(written)
    seen: set[int] = set()
    progresses = 0
    for kind, r in log:
        if kind == "event":
            seen.add(r)
        else:
            progresses += 1
            assert {x for x in all_events if x <= r} <= seen, f"progress at {r} before its events"
    assert progresses > 0
    w.close()

"""A snapshot image's keys (state/snapshot.py SnapshotImage.key_chunks): the store's
sorted index and its tail of new keys, merged a chunk at a time rather than sorted all
at once on the event loop, then adopted as the store's index."""

from __future__ import annotations

import random

from coord_server.state import StateMachine
from coord_server.state.kv import MVCCStore
from coord_server.state.snapshot import SnapshotImage
from coord.v1 import kv_pb2


def test_the_two_runs_merge_in_order_in_equal_chunks_and_become_the_index() -> None:
    for trial in range(100):
        rng = random.Random(trial)
        store = MVCCStore()
        old = sorted({bytes(rng.randrange(256) for _ in range(3)) for _ in range(rng.randrange(3000))})
        taken = set(old)
        new = list(dict.fromkeys(k for k in (bytes(rng.randrange(256) for _ in range(4)) for _ in range(rng.randrange(3000))) if k not in taken))
        store._sorted, store._unsorted = list(old), list(new)
        image = SnapshotImage(b"", store)
        n = rng.choice([1, 7, 100, 4096])
        chunks = list(image.key_chunks(n))
        assert [k for c in chunks for k in c] == sorted(old + new), trial
        assert all(len(c) == n for c in chunks[:-1]), trial
        assert store._sorted == sorted(old + new) and store._unsorted == []


def test_keys_written_while_the_image_is_encoded_stay_in_the_tail() -> None:
    sm = StateMachine()
    for i in range(5000):
        if i == 2500:  # a range merges the first half into the sorted index
            sm.range(kv_pb2.RangeRequest(key=b"k", range_end=b"l", count_only=True))
        sm.apply(i + 1, _put(b"k%05d" % i))
    image = sm.image()
    chunks = image.chunks(keys_per_chunk=1000)
    next(chunks)
    sm.apply(5001, _put(b"a-new-key"))  # between two chunks, as the snapshotter allows
    sm.apply(5002, _put(b"z-new-key"))
    rest = list(chunks)
    assert len(rest) == 4
    got = sm.range(kv_pb2.RangeRequest(key=b"\x00", range_end=b"\xff", keys_only=True))
    keys = [kv.key for kv in got.kvs]
    assert keys == sorted(keys) and len(keys) == 5002 and b"a-new-key" in keys and b"z-new-key" in keys
    assert StateMachine.restore(image.encode()).range(kv_pb2.RangeRequest(key=b"a-new-key")).count == 0


def _put(key: bytes) -> bytes:
    from coord.raft.v1 import command_pb2

    return command_pb2.Command(put=kv_pb2.PutRequest(key=key, value=b"v")).SerializeToString()

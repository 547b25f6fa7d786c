"""The snapshot image (state/snapshot.py Rule 3) and the key index's count (kv.py)."""

from __future__ import annotations

import pytest

from coord.v1 import kv_pb2
from coord_server.state import StateMachine
from coord_server.state.snapshot import ImageOutdated

from .driver import Driver


def loaded(n: int) -> Driver:
    d = Driver()
    for i in range(n):
        d.put(b"k%05d" % i, b"v%d" % i)
    return d


def test_image_encoded_while_writes_go_on_is_the_state_at_its_point() -> None:
    d = loaded(300)
    expected = d.sm.snapshot()
    image = d.sm.image()
    chunks = image.chunks(keys_per_chunk=40)  # 8 chunks
    pieces = [image.head, next(chunks)]
    for i in range(300):  # overwrite, delete and create keys between the chunks
        if i % 3 == 0:
            d.put(b"k%05d" % i, b"new")
        elif i % 3 == 1:
            d.delete(b"k%05d" % i)
        else:
            d.put(b"z%05d" % i, b"created")
        if i % 50 == 0:
            pieces.append(next(chunks))
    pieces.extend(chunks)
    restored = StateMachine.restore(b"".join(pieces))
    assert restored.snapshot() == expected


def test_a_compaction_during_the_image_abandons_it() -> None:
    d = loaded(200)
    d.put(b"k00000", b"again")
    image = d.sm.image()
    chunks = image.chunks(keys_per_chunk=50)
    next(chunks)
    d.compact(d.sm.revision)
    with pytest.raises(ImageOutdated):
        list(chunks)


def count(d: Driver, key: bytes, end: bytes) -> int:
    return d.sm.range(kv_pb2.RangeRequest(key=key, range_end=end, count_only=True)).count


def test_count_from_the_index_matches_a_scan() -> None:
    d = loaded(500)
    for i in range(0, 500, 7):
        d.delete(b"k%05d" % i)
    for i in range(0, 500, 21):
        d.put(b"k%05d" % i, b"back")  # revived
    live = {b"k%05d" % i for i in range(500) if i % 7 or i % 21 == 0}
    for lo, hi in [(b"k", b"l"), (b"k00100", b"k00200"), (b"\0", b"\0"), (b"k00007", b"k00008"), (b"k00014", b"")]:
        end = None if hi == b"\0" else hi or lo + b"\0"
        want = sum(1 for k in live if lo <= k and (end is None or k < end))
        assert count(d, lo, hi) == want
        assert d.sm._store.count((lo, end)) in (want, None)
    d.compact(d.sm.revision)
    assert count(d, b"k", b"l") == len(live)
    assert d.sm._store.count((b"k", b"l")) == len(live)


def test_single_record_keys_survive_rollback_and_compaction() -> None:
    d = loaded(3)
    d.put(b"k00001", b"second")
    d.delete(b"k00002")
    before = d.sm.snapshot()
    d.compact(d.sm.revision)
    assert d.sm._store.history_of(b"k00001")[-1][4] == b"second"
    assert d.sm._store.history_of(b"k00002") == []
    assert len(d.sm._store.history_of(b"k00000")) == 1
    assert StateMachine.restore(d.sm.snapshot()).snapshot() == d.sm.snapshot() != before

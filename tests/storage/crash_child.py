"""Child process of test_disk_crash.py: append, snapshot and compact forever, printing each
acknowledged index once ``save`` has returned. The parent SIGKILLs it at random moments.

    python tests/storage/crash_child.py DATA_DIR SEED

Lines on stdout: ``ready <last index>`` once open, then ``ack <index>`` after each save
(the last index of the batch, durable) and ``snap <index>`` after each snapshot.
"""

from __future__ import annotations

import hashlib
import random
import sys

from coord_server.raft import ConfState, Entry, EntryType, HardState
from coord_server.storage import DiskStorage

CLUSTER = 0xC0FFEE
SEGMENT = 64 << 10


def payload(index: int) -> bytes:
    """What entry ``index`` holds (the parent recomputes it)."""
    return hashlib.sha256(b"%d" % index).digest() * (1 + index % 13)


def snapshot_data(index: int) -> bytes:
    return b"state machine at %d" % index


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    out = sys.stdout
    st = DiskStorage(path, CLUSTER, segment_size=SEGMENT, cache_entries=rng.choice([10, 1000]))
    print(f"ready {st.last_index()}", file=out, flush=True)
    index = st.last_index() + 1
    saves = 0
    while True:
        n = rng.choice([1, 1, 2, 8, 32, 64])
        entries = [Entry(1, i, EntryType.NORMAL, payload(i)) for i in range(index, index + n)]
        index += n
        st.save(HardState(term=1, vote=1, commit=index - 1), entries)
        print(f"ack {index - 1}", file=out, flush=True)
        saves += 1
        if saves % 40 == 0:
            at = index - 1 - rng.randrange(0, 20)
            if at > st.snapshot().meta.index and at >= st.first_index():
                st.create_snapshot(at, ConfState(frozenset({1})), snapshot_data(at))
                print(f"snap {at}", file=out, flush=True)
                st.compact(at - rng.randrange(0, 5) if at - 5 >= st.first_index() else at)


if __name__ == "__main__":
    main()

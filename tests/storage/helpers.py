"""Helpers shared by the storage tests."""

from __future__ import annotations

from collections.abc import Callable

from coord_server.raft import CompactedError, Entry, EntryType, MemoryStorage, UnavailableError
from coord_server.storage import DiskStorage, FileIO

CLUSTER = 0xC0FFEE


class NoSyncIO(FileIO):
    """Real writes, no syncs. For tests of semantics and recovery logic, which reopen in
    the same machine (the page cache survives a close), so that a slow shared disk does
    not make them slow; durability itself is tested with real syncs (test_disk_crash,
    test_disk_errors)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:  # type: ignore[override]
        pass

    def fsync_dir(self, path: str) -> None:
        pass


NO_SYNC = NoSyncIO()


def open_disk(path: str, **kw: object) -> DiskStorage:
    kw.setdefault("segment_size", 4096)
    return DiskStorage(path, CLUSTER, **kw)  # type: ignore[arg-type]


def entry(index: int, term: int = 1, data: bytes | None = None, type: EntryType = EntryType.NORMAL) -> Entry:
    if data is None:
        data = f"entry {index} term {term}".encode()
    return Entry(term=term, index=index, type=type, data=data)


def outcome(fn: Callable[..., object], *args: object) -> tuple[object, ...]:
    """fn(*args) as ('ok', value) or ('raise', type, message) for comparing two storages."""
    try:
        return ("ok", fn(*args))
    except (CompactedError, UnavailableError, ValueError) as e:
        return ("raise", type(e).__name__, str(e))


def state_of(st: DiskStorage | MemoryStorage) -> dict[str, object]:
    """Everything the Storage protocol can tell about ``st``."""
    first, last = st.first_index(), st.last_index()
    return {
        "first": first,
        "last": last,
        "initial_state": st.initial_state(),
        "snapshot": st.snapshot(),
        "terms": [outcome(st.term, i) for i in range(max(0, first - 2), last + 3)],
        "entries": outcome(st.entries, first, last + 1),
    }


def assert_same(disk: DiskStorage, ref: MemoryStorage) -> None:
    assert state_of(disk) == state_of(ref)

"""coord's durable storage: a write-ahead log of segment files plus snapshot files,
behind the Raft core's ``Storage`` protocol (``DiskStorage``).

Import what you need from here; the submodules are an implementation detail.
"""

from .disk import DiskStorage
from .errors import (
    ClusterIdMismatchError,
    DiskStorageError,
    StorageCorruptError,
    StorageFormatError,
    StorageLockedError,
    StorageWriteError,
)
from .files import FileIO
from .records import FORMAT_VERSION

__all__ = [
    "FORMAT_VERSION", "ClusterIdMismatchError", "DiskStorage", "DiskStorageError", "FileIO",
    "StorageCorruptError", "StorageFormatError", "StorageLockedError", "StorageWriteError",
]

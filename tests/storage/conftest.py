"""Fixtures of the storage tests (helpers are in helpers.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest


@pytest.fixture
def data_dir(tmp_path: "os.PathLike[str]") -> Iterator[str]:
    path = os.path.join(os.fspath(tmp_path), "data")
    yield path
    shutil.rmtree(path, ignore_errors=True)

"""Small helpers for the service tests."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, contains: str = "") -> grpc.aio.AioRpcError:
    """Await ``call``; it must fail with ``code`` (and ``contains`` in its details)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
    if contains:
        assert contains in (err.details() or ""), err.details()
    return err


def trailing(err: grpc.aio.AioRpcError, key: str) -> str | None:
    for k, v in err.trailing_metadata() or ():
        if k == key:
            return str(v)
    return None


def session(client_id: str, seq: int) -> tuple[tuple[str, str], ...]:
    return (("coord-client-id", client_id), ("coord-seq", str(seq)))

"""coord_server/loop_lag.py: a blocked event loop is measured, logged and exported."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import generate_latest

from coord_server.loop_lag import LoopLag


def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> LoopLag:
        lag = LoopLag(interval=0.01, log_above=0.1)
        lag.start()
        try:
            await asyncio.sleep(0.05)
            time.sleep(0.25)  # what a long synchronous step does to everything else
            for _ in range(100):
                await asyncio.sleep(0.01)
                if lag.stalls:
                    break
        finally:
            await lag.stop()
        return lag

    with caplog.at_level(logging.WARNING, logger="coord.loop"):
        lag = asyncio.run(main())
    assert 0.2 <= lag.longest < 5
    assert lag.stalls >= 1
    assert any("event loop stalled for" in r.getMessage() and "on the CPU" in r.getMessage() for r in caplog.records)


def test_the_stall_metrics_are_exported() -> None:
    from coord_server.metrics import NodeMetrics

    metrics = NodeMetrics.__new__(NodeMetrics)  # only what attach_loop_lag and the histogram need
    from prometheus_client import CollectorRegistry, Histogram

    metrics.registry = CollectorRegistry()
    metrics.loop_lag_seconds = Histogram("coord_event_loop_lag_seconds", "lag", registry=metrics.registry)
    lag = LoopLag()
    metrics.attach_loop_lag(lag)
    lag.record(0.3)
    text = generate_latest(metrics.registry).decode()
    assert 'coord_event_loop_lag_seconds_bucket{le="0.5"} 1.0' in text
    assert metrics.loop_lag is lag and lag.longest == 0.3

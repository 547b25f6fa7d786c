"""A real coord member (``CoordServer``, every port, every service) running in this test
process on an event loop of its own thread, so a test can read what the server itself
registered (``server.registries``) while it talks to it over gRPC like any client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from coord_server.server import CoordServer
from coord_server.settings import load_settings

T = TypeVar("T")


class MemberThread:
    def __init__(self, argv: list[str]) -> None:
        self.settings = load_settings(argv)
        self.server = CoordServer(self.settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="coord-member", daemon=True)

    def start(self, timeout: float = 60) -> MemberThread:
        self.thread.start()
        self.run(self.server.start(), timeout)
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.run(self.server.stop(0.5), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)

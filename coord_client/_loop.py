"""A private asyncio event loop on a daemon thread: what the synchronous ``Client`` runs
its ``AsyncClient`` on.

Rule 1: every coroutine of one Client runs on its one loop, so grpc.aio objects, leases
        and their keep-alive tasks never cross loops.
Rule 2: the calling thread blocks on the result; if it is interrupted (KeyboardInterrupt)
        the coroutine is cancelled, as an async caller's would be.
Rule 3: a blocking call from the loop's own thread (say, from an ``on_lost`` callback)
        would deadlock; it raises RuntimeError instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["LoopThread"]


class LoopThread:
    def __init__(self, name: str = "coord-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (Rules 2 and 3)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking coord Client call from the client's own event loop thread would deadlock")
        if not self.running:
            coro.close()
            from .errors import ClientClosed

            raise ClientClosed("the client is closed")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            from .errors import ClientClosed

            raise ClientClosed("the call was cancelled: the client is closing") from None
        except BaseException:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop and return at once with its future (for callers that
        collect the result later, such as the tooz driver's asynchronous results)."""
        if not self.running:
            coro.close()
            from .errors import ClientClosed

            raise ClientClosed("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout)

"""Waiting in a queue of the state machine, for Lock.Acquire and Election.Campaign.

A call that was queued (its command applied with ``queued_at`` set) waits on its own member:

1. until the member has applied index ``queued_at`` (a follower may lag the leader that
   answered the forwarded proposal);
2. then on the CoordHub future of (name, lease), which only that lease's grant or the
   end of its wait resolves (no thundering herd);
3. until the call's deadline (none: until the grant, the end of the lease, or the client
   cancelling; a client that goes away cancels its call). When the call ends without
   the grant (deadline passed, client cancelled), and no other call of this member
   waits for the same (name, lease), a WaitCancel for that place in the queue is
   proposed in the background, so the lease leaves the queue; so does a lease queued
   by a proposal that lands after its call ended. The cancel never undoes a grant that
   won the race: the caller may learn of it by a retry with the same `coord-seq`, or
   with Inspect (lock.proto).

A retry with the same `coord-seq` after such a cancel gets the stored "queued" result of
the first attempt, but the wait is gone (the hub's future fails with FailedPrecondition
while the lease lives): QueueWait queues the lease again, once, with a fresh command
(Acquire and Campaign are idempotent per lease, so nothing is applied twice that
matters: the lease joins the end of the queue, as a new call would).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from coord.raft.v1 import command_pb2
from coord_server.coord_hub import CoordHub
from coord_server.errors import CoordError, DeadlineExceeded, FailedPrecondition, Unavailable
from coord_server.member import Member

from .common import DEFAULT_TIMEOUT, PROPOSAL_PENDING, Context, response_of

log = logging.getLogger("coord.services.waits")

CANCEL_ATTEMPTS = 5
CANCEL_TIMEOUT = 5.0

_background: set[asyncio.Task[None]] = set()


def deadline_of(context: Context | None) -> float:
    """The call's deadline in loop time, or infinity when it has none."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return math.inf
    return asyncio.get_running_loop().time() + max(0.0, remaining)


class QueueWait:
    """One Acquire or Campaign call: propose ``command``; unless its result is
    ``decided`` (granted at once, refused, not queued), wait in the queue until
    ``deadline`` (loop time, infinity for none).

    Driven by callbacks rather than a task of its own, so that a grant resolves
    ``future`` one loop iteration after the entry that decided it is applied, together
    with that entry's other answers: a Pipeline stream then sends a Release's result
    and the next holder's grant in one message, and gets that client's next Acquire and
    Release back in one message, one commit per lock handoff rather than two.

    ``future`` resolves to (the command's result, the grant or None when decided at
    once), or fails with the call's error. Cancelling it ends the call (the client went
    away): a lease it left queued leaves the queue (module docstring)."""

    def __init__(
        self,
        node: Member,
        hub: CoordHub,
        kind: str,
        name: str,
        lease: int,
        command: command_pb2.Command,
        decided: Callable[[Any], bool],
        deadline: float,
        lazy: bool = False,
    ) -> None:
        self.node = node
        self.hub = hub
        self.kind = kind
        self.name = name
        self.lease = lease
        self.decided = decided
        self.deadline = deadline
        self.lazy = lazy
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[tuple[Any, Any]] = self.loop.create_future()
        self.future.add_done_callback(self._on_end)
        self._command = command
        self._result: Any = None
        self._queued_at = 0
        """The queued_at of the proposal's result, once it is known."""
        self._wait: asyncio.Future[Any] | None = None
        """The hub's future while waiting in the queue."""
        self._wait_queued_at = 0
        self._requeued = False
        self._timer: asyncio.TimerHandle | None = None
        self._propose(command)

    # ------------------------------------------------------------------ stages

    def _propose(self, command: command_pb2.Command) -> None:
        """Stage 1: the proposal, bounded by the deadline (by DEFAULT_TIMEOUT without one)."""
        left = self.deadline - self.loop.time() if self.deadline != math.inf else DEFAULT_TIMEOUT
        self._set_timer(max(0.0, left), self._proposal_expired)
        self.node.submit(command.SerializeToString(), left, lazy=self.lazy).add_done_callback(self._proposed)

    def _proposed(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            err = fut.exception() if not fut.cancelled() else Unavailable("the proposal was dropped; retry")
            if isinstance(err, TimeoutError):
                err = DeadlineExceeded(f"the deadline passed before {PROPOSAL_PENDING}")
            self._fail(err)  # type: ignore[arg-type]
            return
        try:
            result = response_of(fut.result())
        except CoordError as err:
            self._fail(err)
            return
        if self.future.done():
            # The call ended (deadline, client gone) while the proposal was in flight:
            # a lease it queued leaves the queue; a grant stays (the caller may find it
            # by a retry with the same coord-seq, or with Inspect).
            if not self.decided(result):
                _cancel_later(self.node, self.kind, self.name, self.lease, result.queued_at)
            return
        if self.decided(result):
            self._finish((result, None))
            return
        # Stage 2: the member applies queued_at (a follower may lag the leader that
        # answered the forwarded proposal); then stage 3, the queue.
        self._result, self._queued_at = result, result.queued_at
        self._set_timer_at_deadline(self._wait_expired)
        applied = self.node.applied_future(result.queued_at)
        if applied.done():
            self._enter_queue(applied)
        else:
            applied.add_done_callback(self._enter_queue)

    def _enter_queue(self, _applied: asyncio.Future[None]) -> None:
        if self.future.done():
            return
        wait: asyncio.Future[Any]
        if self.kind == "lock":
            wait, self._wait_queued_at = self.hub.wait_lock(self.name, self.lease)
        else:
            wait, self._wait_queued_at = self.hub.wait_campaign(self.name, self.lease)
        self._wait = wait
        if wait.done():
            self._granted(wait)
        else:
            wait.add_done_callback(self._granted)

    def _granted(self, wait: asyncio.Future[Any]) -> None:
        if self.future.done():
            return
        self._forget()
        err = wait.exception()
        if err is None:
            self._finish((self._result, wait.result()))
        elif isinstance(err, FailedPrecondition) and not self._requeued:
            # This lease's place was cancelled by an earlier call's end while this call
            # was on its way (a retry with the same coord-seq gets the stored "queued"
            # result): queue the lease again with a fresh command, as a new call would.
            self._requeued = True
            self._wait, self._queued_at = None, 0
            fresh = command_pb2.Command()
            fresh.CopyFrom(self._command)
            fresh.ClearField("client_id")
            fresh.ClearField("seq")
            self._propose(fresh)
        else:
            self._fail(err)

    # ------------------------------------------------------------------ endings

    def _proposal_expired(self) -> None:
        self._fail(DeadlineExceeded(f"the deadline passed before {PROPOSAL_PENDING}"))

    def _wait_expired(self) -> None:
        wait = self._wait
        if wait is not None and wait.done() and wait.exception() is None:
            self._granted(wait)  # granted at the very end: the caller gets it
            return
        self._fail(DeadlineExceeded(f"the deadline passed while lease {self.lease} waited for {self.kind} {self.name!r}"))

    def _on_end(self, future: asyncio.Future[Any]) -> None:
        """Every ending: stop the timer; a call that ends without its grant while its
        lease waits (deadline, client gone) takes the lease out of the queue."""
        if self._timer is not None:
            self._timer.cancel()
        if not future.cancelled() and future.exception() is None:
            return
        wait = self._wait
        if wait is not None:
            if wait.done():
                return  # the log ended this wait already: granted (a retry or Inspect tells), or gone
            if self._forget():
                _cancel_later(self.node, self.kind, self.name, self.lease, self._wait_queued_at)
        elif self._queued_at:
            _cancel_later(self.node, self.kind, self.name, self.lease, self._queued_at)  # stage 2

    def _finish(self, outcome: tuple[Any, Any]) -> None:
        if not self.future.done():
            self.future.set_result(outcome)

    def _fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err)

    # ------------------------------------------------------------------ helpers

    def _forget(self) -> bool:
        """Drop the hub wait; True when no other call of this member waits for the same
        (name, lease), so the wait may be cancelled in the log."""
        if self._wait is None:
            return False
        forget = self.hub.forget_lock if self.kind == "lock" else self.hub.forget_campaign
        return forget(self.name, self.lease, self._wait)

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, callback)

    def _set_timer_at_deadline(self, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.deadline != math.inf:
            self._timer = self.loop.call_at(self.deadline, callback)


def _cancel_later(node: Member, kind: str, name: str, lease: int, queued_at: int) -> None:
    cancel = command_pb2.WaitCancel(name=name, lease=lease, queued_at=queued_at)
    if kind == "lock":
        command = command_pb2.Command(lock_cancel=cancel)
    else:
        command = command_pb2.Command(election_cancel=cancel)
    task = asyncio.get_running_loop().create_task(_propose_cancel(node, command), name=f"cancel-{kind}-wait")
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _propose_cancel(node: Member, command: command_pb2.Command) -> None:
    """Propose ``command`` (forwarded to the leader when this member follows), retrying
    while there is no leader; a lease that cannot leave the queue this way still leaves
    it when the lease ends."""
    delay = 0.05
    for _ in range(CANCEL_ATTEMPTS):
        if node.failed is not None or node.stopping:
            return  # the member stops: the lease's end will clean up
        try:
            await asyncio.wait_for(node.propose(command, CANCEL_TIMEOUT), CANCEL_TIMEOUT)
            return
        except (Unavailable, asyncio.TimeoutError, TimeoutError):
            await asyncio.sleep(delay)
            delay *= 2
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged; the lease's end cleans up anyway
            log.warning("could not cancel a wait", exc_info=True)
            return
    log.warning("gave up cancelling a wait after %d attempts: %s", CANCEL_ATTEMPTS, command)

"""Waiting in a queue of the state machine, for Lock.Acquire and Election.Campaign.

A call that was queued (its command applied with ``queued_at`` set) waits on its own member:

1. until the member has applied index ``queued_at`` (a follower may lag the leader that
   answered the forwarded proposal);
2. then on the CoordHub future of (name, lease), which only that lease's grant or the
   end of its wait resolves (no thundering herd);
3. until the call's deadline (none: until the grant, the end of the lease, or the client
   cancelling; a client that goes away cancels its call). When the call ends without the grant (deadline passed,
   client cancelled), and no other call of this member waits for the same (name, lease),
   a WaitCancel for that place in the queue is proposed in the background, so the lease
   leaves the queue. The cancel never undoes a grant that won the race: the caller may
   learn of it by a retry with the same `coord-seq`, or with Inspect (lock.proto).

A retry with the same `coord-seq` after such a cancel gets the stored "queued" result of
the first attempt, but the wait is gone: ``wait_in_queue`` raises WaitGone, and the
service queues the lease again with a fresh command (Acquire and Campaign are idempotent
per lease, so nothing is applied twice that matters: the lease joins the end of the queue,
as a new call would).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from coord.raft.v1 import command_pb2
from coord_server.coord_hub import CoordHub
from coord_server.errors import FailedPrecondition, Unavailable

from .common import DEFAULT_TIMEOUT, DeadlineExceeded, propose_within

log = logging.getLogger("coord.services.waits")

CANCEL_ATTEMPTS = 5
CANCEL_TIMEOUT = 5.0

_background: set[asyncio.Task[None]] = set()


def deadline_of(context: Any) -> float:
    """The call's deadline in loop time, or infinity when it has none."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return math.inf
    return asyncio.get_running_loop().time() + max(0.0, remaining)


def _left(deadline: float) -> float | None:
    if deadline == math.inf:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())


class WaitGone(Exception):
    """The lease's place in the queue was cancelled before this call started waiting
    (an earlier call for it ended); the lease is still live."""


async def wait_in_queue(
    node: Any,
    hub: CoordHub,
    kind: str,
    name: str,
    lease: int,
    queued_at: int,
    deadline: float,
) -> Any:
    """Wait for the grant (kind "lock": a token) or leadership (kind "election": a
    LeaderKey) of ``lease`` in ``name``; DeadlineExceeded at ``deadline`` (loop time,
    infinity for none)."""
    try:
        await asyncio.wait_for(node.wait_applied(queued_at), _left(deadline))
    except (asyncio.TimeoutError, TimeoutError):
        _cancel_later(node, kind, name, lease, queued_at)
        raise DeadlineExceeded(f"the deadline passed while lease {lease} waited for {kind} {name!r}") from None
    fut: asyncio.Future[Any]
    if kind == "lock":
        fut, current = hub.wait_lock(name, lease)
        forget: Callable[[str, int, asyncio.Future[Any]], bool] = hub.forget_lock
    else:
        fut, current = hub.wait_campaign(name, lease)
        forget = hub.forget_campaign
    if fut.done():
        err = fut.exception()
        if isinstance(err, FailedPrecondition):
            raise WaitGone(str(err))
        return fut.result()
    try:
        return await asyncio.wait_for(asyncio.shield(fut), _left(deadline))
    except FailedPrecondition as err:
        raise WaitGone(str(err)) from None  # cancelled by an earlier call's end, lease live
    except (asyncio.TimeoutError, TimeoutError):
        if fut.done() and not fut.exception():
            return fut.result()  # granted at the very end: the caller gets it
        if forget(name, lease, fut):
            _cancel_later(node, kind, name, lease, current)
        raise DeadlineExceeded(f"the deadline passed while lease {lease} waited for {kind} {name!r}") from None
    except asyncio.CancelledError:
        if not (fut.done() and not fut.cancelled() and fut.exception() is None) and forget(name, lease, fut):
            _cancel_later(node, kind, name, lease, current)
        raise
    finally:
        forget(name, lease, fut)


async def queue_and_wait(
    node: Any,
    hub: CoordHub,
    kind: str,
    name: str,
    lease: int,
    command: command_pb2.Command,
    decided: Callable[[Any], bool],
    deadline: float,
) -> tuple[Any, Any]:
    """Acquire and Campaign: propose ``command``; unless its result is ``decided``
    (granted at once, refused, not queued), wait in the queue until ``deadline``.
    Returns (the command's result, the grant or None when decided at once). A retry
    whose wait was cancelled queues again with a fresh command (module docstring)."""
    result = await propose_within(node, command, _proposal_timeout(deadline))
    if decided(result):
        return result, None
    try:
        return result, await wait_in_queue(node, hub, kind, name, lease, result.queued_at, deadline)
    except WaitGone:
        fresh = command_pb2.Command()
        fresh.CopyFrom(command)
        fresh.ClearField("client_id")
        fresh.ClearField("seq")
        result = await propose_within(node, fresh, _proposal_timeout(deadline))
        if decided(result):
            return result, None
        return result, await wait_in_queue(node, hub, kind, name, lease, result.queued_at, deadline)


def _proposal_timeout(deadline: float) -> float:
    """A proposal's time limit for a call with ``deadline`` (the default without one)."""
    left = _left(deadline)
    return DEFAULT_TIMEOUT if left is None else left


def _cancel_later(node: Any, kind: str, name: str, lease: int, queued_at: int) -> None:
    cancel = command_pb2.WaitCancel(name=name, lease=lease, queued_at=queued_at)
    if kind == "lock":
        command = command_pb2.Command(lock_cancel=cancel)
    else:
        command = command_pb2.Command(election_cancel=cancel)
    task = asyncio.get_running_loop().create_task(_propose_cancel(node, command), name=f"cancel-{kind}-wait")
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _propose_cancel(node: Any, command: command_pb2.Command) -> None:
    """Propose ``command`` (forwarded to the leader when this member follows), retrying
    while there is no leader; a lease that cannot leave the queue this way still leaves
    it when the lease ends."""
    delay = 0.05
    for _ in range(CANCEL_ATTEMPTS):
        if node.failed is not None or getattr(node, "_stopping", False):
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

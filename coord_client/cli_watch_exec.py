"""``coordctl watch KEY -- COMMAND``: run COMMAND once per event, as ``etcdctl watch --
cmd`` does, with the event in its environment:

    COORD_WATCH_EVENT_TYPE  PUT or DELETE
    COORD_WATCH_KEY         the key
    COORD_WATCH_VALUE       the value (empty for DELETE)
    COORD_WATCH_REVISION    the event's revision (the key's mod_revision)

Keys and values are passed byte for byte (bytes that are not UTF-8 included); one that
holds a NUL byte, which no environment can carry, is passed as hex in
COORD_WATCH_KEY_HEX / COORD_WATCH_VALUE_HEX instead. The command runs after the event is
printed, one at a time in event order; coordctl waits for it before the next event. A
command that fails is reported on stderr and watching goes on.
"""

from __future__ import annotations

import asyncio
import os
import sys

from ._deathsig import dying_with_parent
from .types import Event, EventType


def event_environment(event: Event) -> dict[str, str]:
    env = {
        "COORD_WATCH_EVENT_TYPE": event.type.name,
        "COORD_WATCH_REVISION": str(event.kv.mod_revision),
    }
    value = event.kv.value if event.type == EventType.PUT else b""
    for name, data in (("COORD_WATCH_KEY", event.kv.key), ("COORD_WATCH_VALUE", value)):
        if b"\0" in data:
            env[f"{name}_HEX"] = data.hex()
        else:
            env[name] = os.fsdecode(data)
    return env


async def run_for_event(command: list[str], event: Event) -> int:
    """Run ``command`` for ``event`` and wait for it; its exit status (126/127 when it
    could not be started)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *dying_with_parent(command, os.getpid()), env={**os.environ, **event_environment(event)}
        )
    except OSError as err:
        print(f"coordctl: cannot run {command[0]!r}: {err}", file=sys.stderr)
        return 127 if isinstance(err, FileNotFoundError) else 126
    try:
        status = await proc.wait()
    except asyncio.CancelledError:
        proc.terminate()
        await proc.wait()
        raise
    if status != 0:
        print(f"coordctl: {command[0]} exited {status} for the event at revision {event.kv.mod_revision}",
              file=sys.stderr)
    return status

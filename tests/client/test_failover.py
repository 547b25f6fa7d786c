"""Failover against real processes: the leader is SIGKILLed in the middle of a write loop
and of a watch.

- Writes: several threads share one Client, each putting its own key over and over. The
  leader dies part-way. No error may reach the callers, and every key's version must equal
  the number of puts made to it: a write applied twice (a retry that the server did not
  recognise as one) would show as a higher version.
- Watch: a watcher on the leader sees a numbered sequence of puts made across the leader's
  death; it must see every number once, in order, with increasing revisions. The same
  client holds a lock on a short lease meanwhile: its keep-alive must move to the new
  leader before the lease runs out, so the lock is never lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from coord_client import Client
from tests.client.conftest import endpoints_of, wait_for
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(90)

WRITERS = 4
PUTS = 40


def test_failover_mid_write_loop_reaches_no_caller_and_applies_nothing_twice(
    new_cluster: Callable[..., Cluster],
) -> None:
    cluster = new_cluster()
    leader = cluster.wait_for_leader()
    done = [0] * WRITERS
    failures: list[BaseException] = []
    with Client(endpoints_of(cluster), timeout=30) as client:
        client.put("warm-up", "x")  # the client now prefers the leader

        def writer(w: int) -> None:
            try:
                for i in range(1, PUTS + 1):
                    client.put(f"w{w}", str(i))
                    done[w] = i
            except BaseException as err:  # noqa: BLE001 - reported below
                failures.append(err)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        wait_for(lambda: sum(done) >= WRITERS * PUTS // 4, 30, "a quarter of the writes")
        cluster.kill(leader)
        killed_at = sum(done)
        for t in threads:
            t.join(60)
        assert not failures, f"errors reached the callers: {failures!r}"
        assert done == [PUTS] * WRITERS
        assert killed_at < WRITERS * PUTS, "the leader died after the loop; nothing was tested"
        new_leader = cluster.wait_for_leader(other_than=leader)
        assert new_leader != leader
        for w in range(WRITERS):
            kv = client.get(f"w{w}")
            assert kv is not None and kv.value == str(PUTS).encode()
            assert kv.version == PUTS, f"w{w} has version {kv.version}: a put was applied twice"
        assert client._aclient._transport.retries > 0, "no call was retried: the kill was not exercised"


def test_watch_continues_across_a_leader_kill_with_no_gap_and_no_duplicate(
    new_cluster: Callable[..., Cluster],
) -> None:
    cluster = new_cluster()
    leader = cluster.wait_for_leader()
    addresses = [cluster.nodes[leader].address] + [n.address for n in cluster.nodes.values() if n.name != leader]
    total = 60
    with Client(addresses, timeout=30) as watcher_client, Client(addresses, timeout=30) as writer:
        events = watcher_client.watch("seq/", prefix=True).start()  # on the leader
        held = watcher_client.lock("held-across-the-kill", ttl=3)
        assert held.acquire()
        seen: list[tuple[int, int]] = []

        def consume() -> None:
            for event in events:
                seen.append((int(event.value), event.revision))
                if len(seen) >= total:
                    return

        consumer = threading.Thread(target=consume)
        consumer.start()
        for i in range(1, total + 1):
            writer.put(f"seq/{i % 7}", str(i))
            if i == total // 3:
                wait_for(lambda: len(seen) >= total // 3, 20, "the watcher to catch up before the kill")
                cluster.kill(leader)
                killed = time.monotonic()
            if i == total // 3 + 5:
                time.sleep(0.5)  # let the watcher reconnect while writes continue
        consumer.join(60)
        events.cancel()
        assert [v for v, _ in seen] == list(range(1, total + 1))
        revisions = [r for _, r in seen]
        assert revisions == sorted(set(revisions))
        assert events.reconnects >= 1, "the watch never lost its stream: the kill was not exercised"
        time.sleep(max(0.0, killed + 2 * 3 - time.monotonic()))  # two TTLs after the kill
        assert not held.lost.is_set(), f"the lock was lost across the leader kill: {held.lost_reason}"
        assert watcher_client._aclient._keepaliver.reconnects >= 1, "the keep-alive stream was not on the leader"
        holders = watcher_client.lock_info("held-across-the-kill").holders
        assert [h.token for h in holders] == [held.fencing_token]
        held.release()

"""tooz's etcd3+http driver (over etcd3gw and etcd's JSON gateway, unmodified) through
its main operations against the gateway at argv[1]; prints "ALL OK"."""

import sys
import uuid

from tooz import coordination

url = f"etcd3+http://{sys.argv[1]}?timeout=20"
a = coordination.get_coordinator(url, b"member-a")
b = coordination.get_coordinator(url, b"member-b")
a.start(start_heart=False)
b.start(start_heart=False)
a.heartbeat()

lock_a, lock_b = a.get_lock(b"tooz-lock"), b.get_lock(b"tooz-lock")
assert lock_a.acquire(blocking=False)
assert not lock_b.acquire(blocking=False)
assert lock_a.release()
assert lock_b.acquire(blocking=False)
assert lock_b.release()

group = ("g-" + uuid.uuid4().hex[:8]).encode()
a.create_group(group).get()
a.join_group(group, capabilities=b"cap-a").get()
b.join_group(group, capabilities=b"cap-b").get()
assert set(a.get_members(group).get()) == {b"member-a", b"member-b"}
assert a.get_member_capabilities(group, b"member-b").get() == b"cap-b"
assert group in a.get_groups().get()
b.leave_group(group).get()
assert set(a.get_members(group).get()) == {b"member-a"}
a.stop()
b.stop()
print("ALL OK")

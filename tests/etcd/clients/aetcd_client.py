"""aetcd (asyncio etcd client, unmodified) through its main operations against the
server at argv[1]; prints "ALL OK" when every assertion held."""

import asyncio
import sys

import aetcd
import aetcd.exceptions


async def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    async with aetcd.Client(host=host, port=int(port), timeout=20) as c:
        await c.put(b"ae/a", b"1")
        await c.put(b"ae/b", b"2")
        got = await c.get(b"ae/a")
        assert got.value == b"1" and got.version == 1, got
        assert await c.get(b"ae/missing") is None
        rng = await c.get_prefix(b"ae/")
        assert [kv.value for kv in rng] == [b"1", b"2"] and rng.count == 2
        put = await c.put(b"ae/a", b"11", prev_kv=True)
        assert put.prev_kv.value == b"1"
        deleted = await c.delete(b"ae/b", prev_kv=True)
        assert deleted.deleted == 1 and deleted.prev_kv.value == b"2"

        ok, _ = await c.transaction(
            compare=[c.transactions.value(b"ae/a") == b"11"],
            success=[c.transactions.put(b"ae/t", b"yes")],
            failure=[],
        )
        assert ok and (await c.get(b"ae/t")).value == b"yes"

        lease = await c.lease(30)
        await c.put(b"ae/leased", b"x", lease=lease)
        assert 25 <= await lease.remaining_ttl() <= 30
        assert await lease.granted_ttl() == 30
        assert await lease.keys() == [b"ae/leased"]
        await lease.refresh()
        await lease.revoke()
        assert await c.get(b"ae/leased") is None

        watch = await c.watch(b"ae/w")
        await c.put(b"ae/w", b"v")
        async for event in watch:
            assert event.kv.value == b"v"
            break
        await watch.cancel()

        rev = (await c.get(b"ae/a")).mod_revision
        await c.put(b"ae/a", b"12")
        await c.compact((await c.get(b"ae/a")).mod_revision)
        try:
            from aetcd.rpc import rpc_pb2 as rpc

            await c.kvstub.Range(rpc.RangeRequest(key=b"ae/a", revision=rev), timeout=10, metadata=c.metadata)
            raise AssertionError("read at a compacted revision succeeded")
        except Exception as err:  # noqa: BLE001
            assert "required revision has been compacted" in str(err), err

        status = await c.status()
        assert status.version.startswith("3.")
        members = [m async for m in c.members()]
        assert members
    print("ALL OK")


asyncio.run(main())

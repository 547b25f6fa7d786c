"""Tests of the durable storage (coord_server/storage): semantics against MemoryStorage,
recovery from damage, crashes of real processes, failing disks, the asyncio face."""

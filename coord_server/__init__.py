"""The coord node: Raft core, storage, transport, state machine and gRPC services.

A node runs one Raft member on one asyncio loop and serves the public API in
``protos/coord/v1`` (stubs in ``coord.v1``). The pure consensus core lives in
``coord_server.raft``; durability in ``coord_server.storage``. ``coord-server``
(``coord_server.cli``) is the entry point.
"""

"""Typed Python client for coord (sync and asyncio), and the ``coordctl`` CLI.

The client library arrives with the coord-client work. Until then, any gRPC client can
talk to coord through the generated stubs in ``coord.v1`` (from ``protos/coord/v1``).
"""

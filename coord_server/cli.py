"""``coord-server``: run one coord member until SIGTERM or SIGINT (SIGHUP: reload the
TLS certificates and keys).

With no arguments it runs a one-member cluster on 127.0.0.1:7379 with its data in
``./default.coord`` (the embedded default). ``coord-server --help`` lists the settings.
Exit status: 0 after a clean shutdown, 1 when the node failed (storage error), 2 for a
settings mistake. ``coord-server restore ...`` writes a data directory from a backup
instead (restore.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from coord_server.settings import ServerSettings, SettingsError, load_settings


async def _serve(settings: ServerSettings) -> int:
    from coord_server.server import CoordServer

    server = CoordServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificates)  # docs/security.md
    peers = f", peers on {server.settings.peer_listen}" if server.settings.peer_listen else ""
    if server.settings.log_format == "json":
        logging.getLogger("coord.server").info("serving on %s%s", server.settings.listen, peers)
    else:
        print(f"coord-server: serving on {server.settings.listen}{peers}", file=sys.stderr, flush=True)
    assert server.node is not None
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass
        if server.node.failed is not None:
            await server.stop(grace=0.5)
            return 1
    await server.stop()
    return 0


SERVER_PACKAGES = {"grpc_reflection": "grpcio-reflection", "prometheus_client": "prometheus-client",
                   "aiohttp": "aiohttp"}
"""Modules of the [server] extra (pyproject.toml) -> their distributions."""


def missing_server_packages() -> list[str]:
    """The [server] extra's distributions that are not installed (``pip install coord``
    alone gives the client and coordctl)."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:
            return False

    return [dist for module, dist in SERVER_PACKAGES.items() if not found(module)]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server``; returns the process exit status."""
    args = list(argv) if argv is not None else sys.argv[1:]
    missing = missing_server_packages()
    if missing:
        print(f"coord-server: the server's packages are not installed ({', '.join(missing)}): "
              "pip install 'coord[server]'", file=sys.stderr)
        return 2
    if args[:1] == ["restore"]:  # ``coord-server restore ...``: seed a new cluster from a backup
        from coord_server.restore import main as restore_main

        return restore_main(args[1:])
    try:
        settings = load_settings(args)
    except SettingsError as err:
        print(f"coord-server: {err}", file=sys.stderr)
        return 2
    from coord_server.logs import configure

    configure(settings.log_level, settings.log_format, settings.name)
    from coord_server.storage import DiskStorageError

    try:
        return asyncio.run(_serve(settings))
    except SettingsError as err:
        print(f"coord-server: {err}", file=sys.stderr)
        return 2
    except DiskStorageError as err:
        print(f"coord-server: storage error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

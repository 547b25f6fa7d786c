"""The member's optional HTTP listener (``--http-listen``) and the surfaces it carries.

Every surface (etcd's JSON gateway ``/v3/...``, coord.v1 as Connect-protocol JSON, the
dashboard at ``/``) answers by calling this member's own gRPC client port over a loopback
channel, passing the caller's ``Authorization`` header on as gRPC metadata: validation,
auth, quotas and leader forwarding then apply exactly as they do on gRPC, and no HTTP
handler touches the node or the state machine. This is how etcd's own gateway works.
"""

from typing import Any


def connect_surface(app: Any, ctx: Any) -> None:
    """coord.v1 as Connect-protocol JSON (coord_server/http/connect.py)."""
    from coord_server.http import connect

    connect.add_routes(app, ctx)


def dashboard_surface(app: Any, ctx: Any) -> None:
    """The live dashboard at ``/`` (coord_server/http/dashboard.py)."""
    from coord_server.http import dashboard as page

    page.add_routes(app, ctx)


def etcd_gateway_surface(app: Any, ctx: Any) -> None:
    """etcd's JSON gateway at ``/v3/...``, ``/version`` and ``/health``
    (coord_server/http/etcd_gateway.py)."""
    from coord_server.http import etcd_gateway

    etcd_gateway.add_routes(app, ctx)

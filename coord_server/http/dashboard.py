"""The live dashboard at ``/``: static files shipped in the package (coord_server/http/assets).

The page is plain HTML, CSS and JavaScript with no build step and nothing fetched from
elsewhere. It reads the cluster through the same Connect JSON calls any client makes
(coord_server/http/connect.py), sending the bearer token typed into it, so it sees what
that token may see and nothing more; the server gives it no private API.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from coord_server.http.listener import HttpContext

ASSETS = Path(__file__).with_name("assets")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def _index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


async def _asset(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])


def _file(name: str) -> web.StreamResponse:
    path = ASSETS / name
    if "/" in name or path.suffix not in TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'self'"},
    )


def add_routes(app: web.Application, ctx: HttpContext) -> None:
    app.router.add_get("/", _index)
    app.router.add_get("/dashboard/{name}", _asset)

"""The browser pages in ``web/``: the login page, the nurse's and the specialist's page, and
their static assets under ``/static/``.

Outside ``/api/``, so the API guard does not see these routes: the pages hold no data and
fetch everything through the API after loading. Every answer carries a strict
Content-Security-Policy, so the pages can load nothing from outside this server and run no
inline script; HTML is never cached (it names the module versions to load).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from aiohttp import web

WEB_ROOT: Final = Path(__file__).resolve().parents[2] / "web"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "media-src 'self' blob:; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_COMMON: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}
_HTML_HEADERS: Final = {**_COMMON, "Cache-Control": "no-store"}
# Assets are small and change with every deploy; revalidating (ETag/Last-Modified) keeps a
# nurse's phone from running yesterday's module against today's page.
_ASSET_HEADERS: Final = {**_COMMON, "Cache-Control": "no-cache"}

_ASSET_DIRS: Final = frozenset({"css", "js", "i18n", "img", "vendor"})
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}

routes = web.RouteTableDef()


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / name, headers={**_HTML_HEADERS, "Content-Type": "text/html; charset=utf-8"})


@routes.get("/")
async def login_page(request: web.Request) -> web.FileResponse:
    return _page("index.html")


@routes.get("/nurse")
async def nurse_page(request: web.Request) -> web.FileResponse:
    return _page("nurse.html")


@routes.get("/specialist")
async def specialist_page(request: web.Request) -> web.FileResponse:
    return _page("specialist.html")


@routes.get("/lead")
async def lead_page(request: web.Request) -> web.FileResponse:
    return _page("lead.html")


@routes.get("/static/{path:.+}")
async def asset(request: web.Request) -> web.FileResponse:
    """A file from one of the asset folders of ``web/``; anything else is 404."""
    relative = Path(request.match_info["path"])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts or relative.parts[0] not in _ASSET_DIRS:
        raise web.HTTPNotFound()
    path = (WEB_ROOT / relative).resolve()
    if not path.is_relative_to(WEB_ROOT) or not path.is_file():
        raise web.HTTPNotFound()
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={**_ASSET_HEADERS, "Content-Type": kind})


def setup(app: web.Application) -> None:
    app.add_routes(routes)

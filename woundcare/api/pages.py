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
from yarl import URL

WEB_ROOT: Final = Path(__file__).resolve().parents[2] / "web"


def content_security_policy(public_url: str | None) -> str:
    """The pages' policy: scripts, styles and connections to this server only. ``'self'``
    covers same-origin WebSockets; behind a proxy the public URL's ws(s) origin is named too,
    and no other host may be reached (not ``ws: wss:``, which is any host)."""
    connect = "'self'"
    if public_url:
        url = URL(public_url)
        if url.scheme in ("http", "https") and url.host:
            connect += f" {url.with_scheme('wss' if url.scheme == 'https' else 'ws').origin()}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"media-src 'self' blob:; img-src 'self' blob: data:; connect-src {connect}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


_HEADERS = web.AppKey("page_headers", dict[str, str])
"""The headers every page and asset carries."""

# HTML is never cached; assets are small and change with every deploy: revalidating
# (ETag/Last-Modified) keeps a nurse's phone from running yesterday's module against today's page.
_HTML_CACHE: Final = {"Cache-Control": "no-store"}
_ASSET_CACHE: Final = {"Cache-Control": "no-cache"}

_ASSET_DIRS: Final = frozenset({"css", "js", "i18n", "img", "vendor"})
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}

routes = web.RouteTableDef()


def _page(request: web.Request, name: str) -> web.FileResponse:
    headers = request.config_dict[_HEADERS] | _HTML_CACHE | {"Content-Type": "text/html; charset=utf-8"}
    return web.FileResponse(WEB_ROOT / name, headers=headers)


@routes.get("/")
async def login_page(request: web.Request) -> web.FileResponse:
    return _page(request, "index.html")


@routes.get("/nurse")
async def nurse_page(request: web.Request) -> web.FileResponse:
    return _page(request, "nurse.html")


@routes.get("/specialist")
async def specialist_page(request: web.Request) -> web.FileResponse:
    return _page(request, "specialist.html")


@routes.get("/guest")
async def guest_page(request: web.Request) -> web.FileResponse:
    """A guest's page (no account): the one-time link's code is in the URL's fragment."""
    return _page(request, "guest.html")


@routes.get("/lead")
async def lead_page(request: web.Request) -> web.FileResponse:
    return _page(request, "lead.html")


@routes.get("/static/{path:.+}")
async def asset(request: web.Request) -> web.FileResponse:
    """A file from one of the asset folders of ``web/``; anything else is 404."""
    relative = Path(request.match_info["path"])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts or relative.parts[0] not in _ASSET_DIRS:
        raise web.HTTPNotFound()
    try:
        path = (WEB_ROOT / relative).resolve()
        found = path.is_relative_to(WEB_ROOT) and path.is_file()
    except (ValueError, OSError):
        # A NUL byte (``%00``) or a name the filesystem refuses: no such asset.
        found = False
    if not found:
        raise web.HTTPNotFound()
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers=request.config_dict[_HEADERS] | _ASSET_CACHE | {"Content-Type": kind})


def setup(app: web.Application, public_url: str | None) -> None:
    app[_HEADERS] = {
        "Content-Security-Policy": content_security_policy(public_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    }
    app.add_routes(routes)

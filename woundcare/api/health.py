"""``/healthz`` (the process is up) and ``/readyz`` (it can serve: database, Redis, keys;
and it is not draining for shutdown). Public and cheap, for load balancers and systemd."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..appkeys import services

routes = web.RouteTableDef()

DRAINING = web.AppKey("draining", asyncio.Event)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _database(request: web.Request) -> None:
    await services(request).database.ping()


async def _redis(request: web.Request) -> None:
    url = services(request).settings.redis_url
    if url is None:
        return
    import redis.asyncio as redis

    client = redis.from_url(url, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _keys(request: web.Request) -> None:
    # Unwrapping needs the master key; a wrong or missing one fails here, not on a patient read.
    await services(request).keyring.check()


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, check in (("database", _database), ("redis", _redis), ("keys", _keys)):
        try:
            await asyncio.wait_for(check(request), 3.0)
            checks[name] = "ok"
        except Exception as exc:  # any failure makes the instance unready; the kind is enough
            checks[name] = type(exc).__name__
    draining = request.config_dict[DRAINING].is_set()
    ready = not draining and all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "unready", "draining": draining, "checks": checks}
    return web.json_response(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})

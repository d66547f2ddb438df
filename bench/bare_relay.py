"""The floor for signaling on this stack: the least an aiohttp WebSocket relay can do.

A client connects to ``/ws?id=ID``; a JSON frame ``{"to": ID, ...}`` goes to that client
with ``"from"`` added. No authentication, no validation beyond JSON, no rooms, no outbox,
no audit. orjson and uvloop, as woundcare uses them. ``POST /upload`` reads a body as it
arrives and drops it: what any aiohttp server pays to take an upload in (``bench.ingest``).

    python -m bench.bare_relay --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import orjson
import uvloop
from aiohttp import WSMsgType, web

PEERS = web.AppKey("peers", dict[str, web.WebSocketResponse])


async def relay(request: web.Request) -> web.WebSocketResponse:
    peers = request.app[PEERS]
    me = request.query["id"]
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    peers[me] = ws
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            frame = orjson.loads(msg.data)
            target = peers.get(frame.pop("to", None))
            if target is not None:
                frame["from"] = me
                await target.send_str(orjson.dumps(frame).decode())
    finally:
        if peers.get(me) is ws:
            del peers[me]
    return ws


async def upload(request: web.Request) -> web.Response:
    """The body read piece by piece as it arrives, as woundcare reads a photo (without its
    larger batches of socket reads), and dropped: the socket's reads, the HTTP parser and the
    handler's wake-ups, and nothing else."""
    size = 0
    async for chunk, _ in request.content.iter_chunks():
        size += len(chunk)
    return web.json_response({"bytes": size}, status=201)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application()
    app[PEERS] = {}
    app.router.add_get("/ws", relay)
    app.router.add_post("/upload", upload)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

"""A webhook receiver for the tests: a real aiohttp server on a free loopback port.

It checks every request's signature twice, with the Standard Webhooks project's own Python
library (``standardwebhooks``) and with ours, records what came, and answers as the test
says (``answer``: a status for each request, or a coroutine that takes its time). Like a real
receiver it de-duplicates by ``webhook-id``: :attr:`Receiver.accepted` holds each id once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.services import free_port
from woundcare.crypto.webhook_signature import SignatureError, verify


@dataclass(frozen=True)
class Received:
    id: str
    timestamp: str
    body: bytes
    at: float
    """time.monotonic() when it arrived."""
    verified: bool
    """Both libraries took its signature."""
    status: int
    """What the receiver answered (0: it was still answering when the sender went away)."""

    @property
    def payload(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]


Answer = Callable[[str], Awaitable[int]]


async def accept(_id: str) -> int:
    return 204


async def unavailable(_id: str) -> int:
    return 503


@dataclass
class Receiver:
    secret: str | None = None
    answer: Answer = accept
    received: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)
    """webhook-id -> the first request of it answered 2xx: what a receiver would act on."""
    port: int = field(default_factory=free_port)
    endpoint_id: int | None = None
    """The endpoint the server knows it by."""
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def attempts(self, msg_id: str) -> list[Received]:
        return [r for r in self.received if r.id == msg_id]

    def _verified(self, headers: dict[str, str], body: bytes) -> bool:
        assert self.secret is not None, "the receiver was given no secret"
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
            verify(self.secret, headers["webhook-id"], headers["webhook-timestamp"],
                   headers["webhook-signature"], body, time.time())
        except (WebhookVerificationError, SignatureError, KeyError):
            return False
        return True

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "")
        arrived = time.monotonic()
        verified = self._verified(headers, body)
        status = 0
        try:
            status = await self.answer(msg_id) if verified else 401
        finally:
            entry = Received(msg_id, headers.get("webhook-timestamp", ""), body, arrived, verified, status)
            self.received.append(entry)
            if 200 <= status < 300:
                self.accepted.setdefault(msg_id, entry)
        return web.Response(status=status)

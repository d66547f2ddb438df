"""The specialist's queue gets a join ready before the click, in a real browser: the join token
of the first entry and of the entry the pointer is on, and a /ws socket, so that the click sends
only the `join`. Tokens are not fetched for the other entries (each request is a `consultation.join`
in the audit log), and a socket the server closed before the join went out is replaced, not
taken for a refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tests.e2e.browser import DESKTOP, async_playwright, eventually, launch
from tests.e2e.flows import PASSWORD, UI_TIMEOUT_MS, log_in
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent
from woundcare.db.models import StaffRole
from woundcare.demo import DEMO_REGION


AHEAD_PROBE = """
(() => {
  const seen = { clickAt: null, joinSocketMadeAt: null, tokensAfterClick: 0 };
  Object.defineProperty(window, '__ahead', { value: seen });
  document.addEventListener('click', (event) => {
    if (event.target instanceof Element && event.target.closest('#queue-body button')) seen.clickAt = performance.now();
  }, true);
  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    madeAt = performance.now();

    send(data) {
      if (typeof data === 'string' && data.includes('"type":"join"')) seen.joinSocketMadeAt ??= this.madeAt;
      super.send(data);
    }
  };
  const nativeFetch = window.fetch;
  window.fetch = (input, init) => {
    if (seen.clickAt !== null && String(input).endsWith('/join-token')) seen.tokensAfterClick += 1;
    return nativeFetch(input, init);
  };
})();
"""
"""On the page's clock: the click on Join, when the socket that sent the first join was made, and
the join-token requests after the click."""


@dataclass
class Requests:
    """The join-token requests and the WebSockets of a page, in order."""

    tokens: list[str] = field(default_factory=list)
    """The consultation of each join-token request."""
    sockets: list[list[dict[str, Any]]] = field(default_factory=list)
    """Each socket's frames, sent and received (``"dir"``: ``sent`` or ``received``)."""

    def watch(self, page: Any) -> None:
        page.on("request", self._request)
        page.on("websocket", self._socket)

    def _request(self, request: Any) -> None:
        if request.url.endswith("/join-token"):
            self.tokens.append(request.url.rsplit("/", 2)[-2])

    def _socket(self, socket: Any) -> None:
        frames: list[dict[str, Any]] = []
        self.sockets.append(frames)
        socket.on("framesent", lambda payload: frames.append({"dir": "sent", **json.loads(payload)}))
        socket.on("framereceived", lambda payload: frames.append({"dir": "received", **json.loads(payload)}))

    def joined(self) -> list[int]:
        """The sockets (by index) that received `joined`."""
        return [i for i, frames in enumerate(self.sockets) if any(f["type"] == "joined" for f in frames)]


async def specialist_on_queue(
    start_server: Callable[..., Awaitable[RunningServer]], browser: Any, consultations: int,
    token_delay: float = 0.0, **settings: Any,
) -> tuple[RunningServer, Any, Requests, list[str]]:
    """A logged-in specialist's page showing ``consultations`` waiting entries, each join token
    answered ``token_delay`` seconds late; their ids in queue order."""
    server = await start_server(**settings)
    await server.add_user("spesialist", PASSWORD, {DEMO_REGION: StaffRole.SPECIALIST})
    for _ in range(consultations):
        await server.new_consultation()
    context = await browser.new_context(viewport=DESKTOP, locale="nb-NO")
    await context.add_init_script(AHEAD_PROBE)
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    requests = Requests()
    requests.watch(page)
    if token_delay:
        async def late(route: Any) -> None:
            await asyncio.sleep(token_delay)
            await route.continue_()

        await context.route("**/join-token", late)
    await log_in(page, server.url, "spesialist", "/specialist")
    rows = page.locator("#queue-body tr")
    await eventually(rows.count, lambda n: n == consultations, 10, "the queue's entries")
    ids = [await rows.nth(i).get_attribute("data-consultation") for i in range(consultations)]
    return server, page, requests, [str(i) for i in ids]


async def test_the_click_sends_only_the_join(start_server: Callable[..., Awaitable[RunningServer]]) -> None:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            server, page, requests, (first, second, third) = await specialist_on_queue(start_server, browser, 3)
            # The first entry's token comes without a gesture; no other entry's.
            await eventually(lambda: requests.tokens, lambda t: t == [first], 10, "the first entry's token alone")
            join = page.locator(f'#queue-body tr[data-consultation="{third}"] button')
            await join.hover()
            await eventually(lambda: requests.tokens, lambda t: t == [first, third], 10, "the pointed entry's token")
            await join.click()
            await eventually(requests.joined, bool, 10, "the specialist joined")
            [joined] = requests.joined()
            sent = [f for f in requests.sockets[joined] if f["dir"] == "sent"]
            assert sent[0]["type"] == "join" and sent[0]["consultation"] == third
            # On a socket made before the click, with the token fetched before it.
            ahead = await page.evaluate("window.__ahead")
            assert ahead["joinSocketMadeAt"] < ahead["clickAt"], ahead
            assert ahead["tokensAfterClick"] == 0, ahead
            assert requests.tokens == [first, third], "another entry's token was fetched"
            assert second not in requests.tokens
            # Each token fetched ahead was audited as today, and only those.
            async with server.app[SERVICES].database.sessions() as session:
                audited = (await session.scalars(
                    select(AuditEvent.resource).where(AuditEvent.action == "consultation.join"))).all()
            assert sorted(audited) == sorted([f"consultation:{first}", f"consultation:{third}"]), audited
        finally:
            await browser.close()


async def test_a_socket_closed_before_the_join_is_replaced(start_server: Callable[..., Awaitable[RunningServer]]) -> None:
    # The server closes a socket that has not joined after 1 s; a join token takes 2 s, so the
    # socket got ready as the pointer reaches the second entry (whose token was not fetched
    # ahead) is closed (4008) before the join can go out on it.
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            _, page, requests, (_, second) = await specialist_on_queue(
                start_server, browser, 2, token_delay=2.0, join_timeout_seconds=1.0)
            await page.locator(f'#queue-body tr[data-consultation="{second}"] button').click()
            await eventually(requests.joined, bool, 20, "the specialist joined on another socket")
            [joined] = requests.joined()
            assert joined > 0, requests.sockets
            before = [f for frames in requests.sockets[:joined] for f in frames]
            assert {f["code"] for f in before if f["type"] == "error"} == {"join_timeout"}, before
            assert not [f for f in before if f["type"] == "join"], before
            assert await page.locator("#call-ended").is_hidden()
        finally:
            await browser.close()

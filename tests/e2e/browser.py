"""Headless Chromium for end-to-end tests of the pages in ``web/``.

Debian's ``/usr/bin/chromium`` driven by Python Playwright (its own Node driver; never
``playwright install``), with fake camera and microphone. A missing Chromium or Playwright
is a skip on a developer machine and a failure in CI (:func:`tests.services.missing`).

The pages are observed, not changed: an init script only keeps a list of the page's
``RTCPeerConnection`` objects (``window.__testPeers``) so the test can read ``getStats``;
:class:`Traffic` records every request and WebSocket a page opens, so a test can fail on
anything that leaves the server's origin.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import missing

CHROMIUM = Path("/usr/bin/chromium")
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
)

PEER_TRACKER = """
(() => {
  const Native = window.RTCPeerConnection;
  const peers = [];
  Object.defineProperty(window, '__testPeers', { value: peers });
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); peers.push(this); }
  };
})();
"""

MEDIA_STATS = """
async () => {
  const out = { framesDecoded: 0, framesSent: 0, audioPacketsReceived: 0, relay: false, connected: 0 };
  for (const pc of window.__testPeers) {
    if (pc.connectionState === 'closed') continue;
    if (pc.connectionState === 'connected') out.connected += 1;
    const report = await pc.getStats();
    const byId = new Map([...report.values()].map((s) => [s.id, s]));
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.type === 'outbound-rtp' && s.kind === 'video') out.framesSent += s.framesSent || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPacketsReceived += s.packetsReceived || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const local = pair && byId.get(pair.localCandidateId);
        if (local && local.candidateType === 'relay') out.relay = true;
      }
    }
  }
  return out;
}
"""


def async_playwright() -> Any:
    """Playwright's async entry point; a skip (a failure in CI) without Chromium or Playwright."""
    if not CHROMIUM.is_file():
        missing(f"{CHROMIUM} is not installed (Debian package chromium)")
    try:
        from playwright.async_api import async_playwright as start
    except ImportError:
        missing("Python playwright is not installed (pip install playwright; never `playwright install`)")
    return start()


async def launch(playwright: Any, *extra_flags: str) -> Any:
    """Chromium with :data:`FLAGS` and ``extra_flags`` (e.g. a WAV file for the fake microphone)."""
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*FLAGS, *extra_flags], headless=True)


PHONE = {"width": 412, "height": 915}
DESKTOP = {"width": 1440, "height": 900}


@asynccontextmanager
async def two_browsers(
    playwright: Any,
    *,
    nurse_locale: str = "nb-NO",
    specialist_locale: str = "nb-NO",
    nurse_script: str = "",
    specialist_script: str = "",
) -> AsyncIterator[tuple[Any, Any]]:
    """A nurse's phone and a specialist's desktop, each its own Chromium, with the peer tracker
    (and ``*_script``, run in that browser's pages before their own); yields their browser
    contexts and closes both browsers after."""
    nurse_browser, specialist_browser = await launch(playwright), await launch(playwright)
    try:
        contexts = []
        for browser, viewport, locale, script in (
            (nurse_browser, PHONE, nurse_locale, nurse_script),
            (specialist_browser, DESKTOP, specialist_locale, specialist_script),
        ):
            context = await browser.new_context(viewport=viewport, locale=locale)
            for init in (PEER_TRACKER, script):
                if init:
                    await context.add_init_script(init)
            contexts.append(context)
        yield contexts[0], contexts[1]
    finally:
        await nurse_browser.close()
        await specialist_browser.close()


def publish_screenshots(*shots: Path) -> None:
    """Copy a passing run's screenshots over the README's, only when asked to
    (``WOUNDCARE_UPDATE_SCREENSHOTS=1``): a test run leaves the checkout as it found it."""
    if os.environ.get("WOUNDCARE_UPDATE_SCREENSHOTS") != "1":
        return
    README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copyfile(shot, README_SCREENSHOTS / shot.name)


async def media_stats(page: Any) -> dict[str, Any]:
    """Totals over the page's open peer connections: video frames decoded and sent, audio packets
    received, whether the selected path is a TURN relay, how many connections are connected."""
    return await page.evaluate(MEDIA_STATS)


async def eventually(
    probe: Callable[[], Any], accept: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """Poll ``probe`` (a plain or a coroutine function) until ``accept`` holds for its value;
    fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s; last: {value!r}")
        await asyncio.sleep(0.25)


@dataclass
class Traffic:
    """Every URL the pages asked for, and those outside the server's origin."""

    origin: str
    seen: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    sent_frames: list[str] = field(default_factory=list)
    """Text frames the pages sent over WebSockets (to check the wire protocol; never printed)."""

    def watch(self, page: Any) -> None:
        page.on("request", lambda request: self._note(request.url))
        page.on("websocket", self._socket)

    def _socket(self, socket: Any) -> None:
        self._note(socket.url)
        socket.on("framesent", lambda payload: self.sent_frames.append(payload if isinstance(payload, str) else ""))

    def _note(self, url: str) -> None:
        self.seen.append(url)
        ws_origin = "ws" + self.origin.removeprefix("http")
        local = any(url == base or url.startswith(base + "/") for base in (self.origin, ws_origin))
        if not local and not url.startswith(("blob:", "data:")):
            self.foreign.append(url)

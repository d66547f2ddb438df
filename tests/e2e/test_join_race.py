"""Joins that lose no ICE candidate, and the watchdog that restarts ICE (issue 14).

The specialist's page used to wait for ``/api/ice-servers`` before it recorded which camera and
``pc`` generation it was answering, so the candidates the camera trickled meanwhile were
dropped and video came only after ICE found its way without them (12 to 20 s). Here the fetch
is held back 1.5 s on one page, and every candidate one page sends must be added by the other.
Then a page ignores the first ICE attempt's candidates, and the camera's watchdog must restart
ICE before ICE gives up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.client import ApiClient
from tests.coturn import running_coturn
from tests.e2e.browser import DESKTOP, PEER_TRACKER, PHONE, Traffic, async_playwright, eventually, launch, media_stats
from tests.e2e.flows import PASSWORD, UI_TIMEOUT_MS, log_in
from tests.server import RunningServer
from woundcare.db.models import StaffRole

FETCH_DELAY_SECONDS = 1.5
MEDIA_SECONDS = 25.0

ADDED_CANDIDATES = """
(() => {
  const native = RTCPeerConnection.prototype.addIceCandidate;
  const added = [];
  Object.defineProperty(window, '__testAddedCandidates', { value: added });
  RTCPeerConnection.prototype.addIceCandidate = function (init, ...rest) {
    const result = native.call(this, init, ...rest);
    if (init && init.candidate) result.then(() => added.push(init.candidate), () => {});
    return result;
  };
})();
"""
"""Lists the remote candidates a page added successfully (``window.__testAddedCandidates``)."""

BLIND_FIRST_ICE = """
(() => {
  const native = RTCPeerConnection.prototype.addIceCandidate;
  let blocked = null;
  Object.defineProperty(window, '__testWithheld', { value: [] });
  RTCPeerConnection.prototype.addIceCandidate = function (init, ...rest) {
    const ufrag = init && init.candidate && / ufrag (\\S+)/.exec(init.candidate)?.[1];
    blocked ??= ufrag;
    if (ufrag && ufrag === blocked) {
      window.__testWithheld.push(init.candidate);
      return Promise.resolve();
    }
    return native.call(this, init, ...rest);
  };
})();
"""
"""Makes a page ignore the other side's candidates of the first ICE attempt (the first ufrag
seen), so that this attempt cannot connect (``window.__testWithheld``)."""

ICE_STATES = """
(() => {
  const Native = window.RTCPeerConnection;
  const states = [];
  Object.defineProperty(window, '__testIceStates', { value: states });
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('iceconnectionstatechange', () => states.push(this.iceConnectionState));
    }
  };
})();
"""
"""Records every ICE connection state the page's connections pass through (``__testIceStates``)."""


@dataclass
class Call:
    server: RunningServer
    patient: str
    pages: dict[str, Any]
    """The nurse's and the specialist's page."""
    traffic: dict[str, Traffic]
    """What each page sent."""


def sent_candidates(traffic: Traffic) -> list[str]:
    frames = [json.loads(f) for f in traffic.sent_frames if f.startswith("{")]
    return sorted(f["candidate"] for f in frames if f["type"] == "candidate" and f["candidate"])


async def added_candidates(page: Any) -> list[str]:
    return sorted(await page.evaluate("[...window.__testAddedCandidates]"))


async def delay_ice_servers(page: Any) -> None:
    async def late(route: Any) -> None:
        await asyncio.sleep(FETCH_DELAY_SECONDS)
        await route.continue_()

    await page.route("**/api/ice-servers", late)


@asynccontextmanager
async def call_pages(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, scripts: dict[str, list[str]]
) -> AsyncIterator[Call]:
    """A nurse's phone and a specialist's desktop over coturn (relay only), each page with its
    init ``scripts``, both logged out, and a patient registered."""
    from playwright.async_api import expect

    playwright_context = async_playwright()
    expect.set_options(timeout=UI_TIMEOUT_MS)
    async with running_coturn(tmp_path / "coturn") as turn:
        server = await start_server(turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay")
        await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
        await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
        api = ApiClient(server.url)
        try:
            await api.login("sykepleier", PASSWORD)
            patient = await api.json(
                "POST", "/api/patients", expect=201, json={"region": "east", "nationalId": "01018012371", "name": "Kari"}
            )
        finally:
            await api.close()
        async with playwright_context as playwright:
            browsers = [await launch(playwright), await launch(playwright)]
            try:
                pages: dict[str, Any] = {}
                traffic: dict[str, Traffic] = {}
                for role, browser, viewport in zip(("nurse", "specialist"), browsers, (PHONE, DESKTOP)):
                    context = await browser.new_context(viewport=viewport, locale="nb-NO")
                    for script in (PEER_TRACKER, *scripts.get(role, [])):
                        await context.add_init_script(script)
                    page = pages[role] = await context.new_page()
                    page.set_default_timeout(UI_TIMEOUT_MS)
                    traffic[role] = Traffic(server.url)
                    traffic[role].watch(page)
                yield Call(server, patient["id"], pages, traffic)
            finally:
                for browser in browsers:
                    await browser.close()


async def start_call(call: Call) -> float:
    """The nurse starts, the specialist joins from the queue; returns when the join was clicked."""
    from playwright.async_api import expect

    nurse, specialist, origin = call.pages["nurse"], call.pages["specialist"], call.server.url
    await log_in(nurse, origin, "sykepleier", "/nurse")
    await nurse.select_option("#patient-select", call.patient)
    await nurse.check("#identity-confirmed")
    await nurse.check("#consent-form input[name=video]")
    await nurse.click("#start")
    await expect(nurse.locator("#status")).to_have_attribute("data-state", "waiting")
    await log_in(specialist, origin, "spesialist", "/specialist")
    row = specialist.locator("#queue-body tr")
    await expect(row).to_have_count(1)
    clicked = time.monotonic()
    await row.locator("button").click()
    return clicked


async def video_over_relay(specialist: Any) -> None:
    await eventually(
        lambda: media_stats(specialist), lambda s: s["framesDecoded"] > 0 and s["relay"],
        MEDIA_SECONDS, "the specialist decodes the nurse's video over the relay")


@pytest.mark.parametrize("delayed", ["specialist", "nurse"])
async def test_join_with_a_slow_ice_server_fetch_keeps_every_candidate(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, delayed: str
) -> None:
    scripts = {"nurse": [ADDED_CANDIDATES], "specialist": [ADDED_CANDIDATES]}
    async with call_pages(start_server, tmp_path, scripts) as call:
        await delay_ice_servers(call.pages[delayed])
        clicked = await start_call(call)
        await video_over_relay(call.pages["specialist"])
        first_video = time.monotonic() - clicked
        # Every candidate one side trickled is added by the other, in both directions.
        for sender, receiver in (("nurse", "specialist"), ("specialist", "nurse")):
            await eventually(
                lambda receiver=receiver: added_candidates(call.pages[receiver]),
                lambda added, sender=sender: added == sent_candidates(call.traffic[sender]) and added != [],
                10, f"every candidate the {sender} sent is added by the other side "
                    f"(sent {sent_candidates(call.traffic[sender])}, video after {first_video:.1f} s)")


async def test_the_camera_restarts_ice_when_media_does_not_connect(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    """The specialist's page ignores the camera's first candidates, so the first ICE attempt
    cannot connect. The nurse's watchdog restarts ICE on the same connection (§12.6) before
    ICE gives up, and video comes."""
    scripts = {"nurse": [ICE_STATES], "specialist": [ICE_STATES, BLIND_FIRST_ICE]}
    async with call_pages(start_server, tmp_path, scripts) as call:
        specialist = call.pages["specialist"]
        await start_call(call)
        await video_over_relay(specialist)
        frames = [json.loads(f) for f in call.traffic["nurse"].sent_frames if f.startswith("{")]
        offers = [(f["pc"], f["restart"]) for f in frames if f["type"] == "offer"]
        assert offers[:2] == [(0, False), (0, True)], offers
        assert await specialist.evaluate("window.__testWithheld.length") > 0
        # Restarted by the watchdog while still checking, not because ICE had given up
        # (old pages waited for `disconnected`, 15 s in, or `failed`).
        for role in ("nurse", "specialist"):
            states = await call.pages[role].evaluate("[...window.__testIceStates]")
            assert "connected" in states, (role, states)
            before = states[: states.index("connected")]
            assert "disconnected" not in before and "failed" not in before, (role, states)

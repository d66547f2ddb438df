"""A join loses no ICE candidate however late the ICE-server fetch answers (issue 14).

The specialist's page used to wait for ``/api/ice-servers`` before it recorded which camera and
``pc`` generation it was answering, so the candidates the camera trickled meanwhile were
dropped and video came only after ICE found its way without them (12 to 20 s). Here the fetch
is held back 1.5 s on one page, and every candidate one page sends must be added by the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.client import ApiClient
from tests.coturn import running_coturn
from tests.e2e.browser import PEER_TRACKER, Traffic, async_playwright, eventually, launch, media_stats
from tests.e2e.test_browser import DESKTOP, PASSWORD, PHONE, UI_TIMEOUT_MS, log_in
from tests.server import RunningServer
from woundcare.db.models import Role as StaffRole

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
"""Counts the remote candidates a page added successfully (``window.__testAddedCandidates``)."""


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


@pytest.mark.parametrize("delayed", ["specialist", "nurse"])
async def test_join_with_a_slow_ice_server_fetch_keeps_every_candidate(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, delayed: str
) -> None:
    playwright_context = async_playwright()
    from playwright.async_api import expect

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
                pages = {}
                traffic = {}
                for role, browser, viewport in zip(("nurse", "specialist"), browsers, (PHONE, DESKTOP)):
                    context = await browser.new_context(viewport=viewport, locale="nb-NO")
                    await context.add_init_script(PEER_TRACKER)
                    await context.add_init_script(ADDED_CANDIDATES)
                    page = pages[role] = await context.new_page()
                    page.set_default_timeout(UI_TIMEOUT_MS)
                    traffic[role] = Traffic(server.url)
                    traffic[role].watch(page)
                    if role == delayed:
                        await delay_ice_servers(page)
                nurse, specialist = pages["nurse"], pages["specialist"]

                await log_in(nurse, server.url, "sykepleier", "/nurse")
                await nurse.select_option("#patient-select", patient["id"])
                await nurse.check("#identity-confirmed")
                await nurse.check("#consent-form input[name=video]")
                await nurse.click("#start")
                await expect(nurse.locator("#status")).to_have_attribute("data-state", "waiting")

                await log_in(specialist, server.url, "spesialist", "/specialist")
                row = specialist.locator("#queue-body tr")
                await expect(row).to_have_count(1)
                joined_at = time.monotonic()
                await row.locator("button").click()

                await eventually(
                    lambda: media_stats(specialist), lambda s: s["framesDecoded"] > 0 and s["relay"],
                    MEDIA_SECONDS, "the specialist decodes the nurse's video over the relay")
                first_video = time.monotonic() - joined_at
                # Every candidate one side trickled is added by the other, in both directions.
                for sender, receiver in (("nurse", specialist), ("specialist", nurse)):
                    await eventually(
                        lambda: added_candidates(receiver),
                        lambda added, sender=sender: added == sent_candidates(traffic[sender]) and added != [],
                        10, f"every candidate the {sender} sent is added by the other side "
                            f"(sent {sent_candidates(traffic[sender])}, video after {first_video:.1f} s)")
            finally:
                for browser in browsers:
                    await browser.close()

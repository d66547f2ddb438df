"""What the call pages say when something breaks, in two real Chromiums over a local coturn relay.

- A session that ends mid-call (revoked on the server) opens the re-login dialog on both pages,
  each in its own language; logging in again keeps the call: no reload, the same consultation,
  frames still decoded, and the request that met the 401 goes through afterwards. Another user
  logging in is taken to their own page.
- A specialist without a microphone is shown as such on both pages, and so is a nurse without one.
- The relay paused (media cut): "video interrupted" and no quality badge on either page.
- The server down while the relay keeps carrying media: "server unreachable", video still live.
- The pilot lead's page has the same dialog; a CSV download that met the 401 follows it, and
  single sign-on from the dialog runs in a window of its own.
- A login in another tab of the same browser is taken up: the open dialog closes by itself,
  and a page whose CSRF token went stale carries on without asking.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.e2e.browser import DESKTOP, PHONE, async_playwright, eventually, launch, media_stats, publish_screenshots
from tests.api.test_oidc import NATIONAL_ID, PID_CLAIM, oidc_settings
from tests.e2e.flows import (
    MEDIA_SECONDS,
    PASSWORD,
    UI_TIMEOUT_MS,
    call_in_two_browsers,
    consultation_count,
    log_in,
    quality_samples,
)
from tests.e2e.process import REPO_ROOT
from tests.oidc_provider import OidcProvider
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import User
from woundcare.db.models import StaffRole

NO_MICROPHONE = """
(() => {
  // A device without a microphone: any request for audio fails as Chromium's does.
  const devices = navigator.mediaDevices;
  const native = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (constraints) => (constraints && constraints.audio
    ? Promise.reject(new DOMException('Requested device not found', 'NotFoundError'))
    : native(constraints));
})();
"""
"""An init script: getUserMedia rejects whenever audio is asked for."""

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
"""Where the re-login dialog and the server-down state are shot (copied to docs/screenshots on request)."""
OTHER_NATIONAL_ID = "02028010047"
"""A second fictional national id number (valid check digits)."""
MARK_PAGE = "() => { window.__notReloaded = true; }"
PAGE_MARKED = "() => window.__notReloaded === true"


@pytest.fixture
def expect() -> Any:
    """Playwright's ``expect`` with the pages' timeout (a skip without Playwright or Chromium)."""
    async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    return expect


async def frames_advance(page: Any, what: str) -> None:
    before = (await media_stats(page))["framesDecoded"]
    await eventually(lambda: media_stats(page), lambda s: s["framesDecoded"] > before + 10, MEDIA_SECONDS, what)


async def log_in_again(page: Any, username: str) -> None:
    await page.fill("#relogin-username", username)
    await page.fill("#relogin-password", PASSWORD)
    await page.click("#relogin button[type=submit]")


async def test_logged_out_mid_call_logs_in_again_without_dropping_it(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, expect: Any
) -> None:
    """Nurse in Norwegian, specialist (without a microphone) in English; both sessions revoked."""
    async with call_in_two_browsers(
        start_server, tmp_path, nurse_locale="nb-NO", specialist_locale="en-GB", specialist_script=NO_MICROPHONE
    ) as call:
        nurse, specialist, server = call.nurse, call.specialist, call.server
        # --- the specialist has no microphone: both sides are told -------------------------
        await expect(specialist.locator("#microphone [data-microphone=own]")).to_have_text(
            "Your microphone is not available – the other side cannot hear you. Use the chat.")
        await expect(nurse.locator("#microphone [data-microphone=specialist]")).to_have_text(
            "Spesialisten har ingen mikrofon, så du hører ikke spesialisten. Bruk chatten.")
        await expect(nurse.locator("#microphone [data-microphone=own]")).to_have_count(0)
        await expect(specialist.locator("#microphone [data-microphone=nurse]")).to_have_count(0)
        await expect(specialist.locator("#mute")).to_be_hidden()

        # --- both sessions end on the server mid-call --------------------------------------
        for page in (nurse, specialist):
            await page.evaluate(MARK_PAGE)
            await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        count = await consultation_count(server)
        for user in call.users.values():
            await server.app[SERVICES].accounts.end_sessions(user)
        # An action of the specialist's meets the 401; it must go through after the re-login.
        await specialist.evaluate("() => document.getElementById('assessment-form').requestSubmit()")
        # The nurse's next quality report (every few seconds) meets it on her page.
        await expect(nurse.locator("#relogin")).to_be_visible()
        await expect(nurse.locator("#relogin h2")).to_have_text("Du er logget ut – logg inn igjen")
        await expect(specialist.locator("#relogin")).to_be_visible()
        await expect(specialist.locator("#relogin h2")).to_have_text("You are logged out – log in again")
        await expect(specialist.locator("#assessment-status")).not_to_have_attribute("data-i18n", "assessment.saved")
        await frames_advance(specialist, "video goes on while logged out")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await nurse.screenshot(path=str(SCREENSHOTS / "relogin-phone.png"))
        publish_screenshots(SCREENSHOTS / "relogin-phone.png")
        samples = len(await quality_samples(server, call.consultation))

        # --- the same users log in again: the call goes on where it was --------------------
        await log_in_again(specialist, "spesialist")
        await log_in_again(nurse, "sykepleier")
        for page in (nurse, specialist):
            await expect(page.locator("#relogin")).to_have_count(0)
            assert await page.evaluate(PAGE_MARKED), "the page was reloaded"
            await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await expect(specialist.locator("#call-view")).to_be_visible()
        await expect(specialist.locator("#assessment-status")).to_have_attribute("data-i18n", "assessment.saved")
        await frames_advance(specialist, "video goes on after logging in again")
        # The reports go through again: the new session's CSRF token is in use.
        await eventually(
            lambda: quality_samples(server, call.consultation), lambda rows: len(rows) > samples,
            MEDIA_SECONDS, "quality reports are stored after logging in again")
        assert await consultation_count(server) == count, "logging in again made a new consultation"
        assert specialist.url.endswith("/specialist"), specialist.url

        # --- another user logs in on the specialist's page: on to that user's own page -----
        await server.app[SERVICES].accounts.end_sessions(call.users["spesialist"])
        await specialist.evaluate("() => document.getElementById('assessment-form').requestSubmit()")
        await expect(specialist.locator("#relogin")).to_be_visible()
        await log_in_again(specialist, "sykepleier")
        await specialist.wait_for_url(re.compile(r"/nurse$"), timeout=UI_TIMEOUT_MS)
        assert not call.page_errors, call.page_errors


async def test_media_cut_and_server_down_are_told_apart(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, expect: Any
) -> None:
    """The nurse without a microphone; coturn paused, then resumed; then the server stopped."""
    async with call_in_two_browsers(
        start_server, tmp_path, nurse_locale="nb-NO", specialist_locale="nb-NO", nurse_script=NO_MICROPHONE
    ) as call:
        nurse, specialist = call.nurse, call.specialist
        pages = (nurse, specialist)
        # --- the nurse has no microphone: both sides are told, she still hears ------------
        await expect(nurse.locator("#microphone [data-microphone=own]")).to_be_visible()
        await expect(specialist.locator("#microphone [data-microphone=nurse]")).to_have_attribute(
            "data-i18n", "microphone.nurse")
        await expect(nurse.locator("#mute")).to_be_hidden()
        await eventually(
            lambda: media_stats(nurse), lambda s: s["audioPacketsReceived"] > 0,
            MEDIA_SECONDS, "the nurse without a microphone hears the specialist")
        for page in pages:
            await expect(page.locator("#quality")).to_have_attribute("data-level", re.compile("good|fair|poor"))
            await expect(page.locator("#quality")).to_be_visible()

        # --- the relay stops carrying media: video interrupted, no quality badge ----------
        coturn = int((call.turn_dir / "turnserver.pid").read_text())
        os.kill(coturn, signal.SIGSTOP)
        try:
            for page in pages:
                await expect(page.locator("#status")).to_have_attribute("data-state", "mediaReconnecting")
                await expect(page.locator("#status")).to_have_text("Videoen er avbrutt – kobler til igjen …")
                await expect(page.locator("#quality")).to_be_hidden()
            # Past another quality sample or two: still no badge while the media is cut.
            await specialist.wait_for_timeout(5000)
            for page in pages:
                await expect(page.locator("#status")).to_have_attribute("data-state", "mediaReconnecting")
                await expect(page.locator("#quality")).to_be_hidden()
        finally:
            os.kill(coturn, signal.SIGCONT)
        for page in pages:
            await expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=45_000)
        await frames_advance(specialist, "video comes back after the relay does")
        for page in pages:
            await expect(page.locator("#quality")).to_be_visible(timeout=30_000)

        # --- the server goes down; the relay carries the video on --------------------------
        await call.server.stop()
        for page in pages:
            await expect(page.locator("#status")).to_have_attribute("data-i18n", "status.serverUnreachable")
            await expect(page.locator("#status")).to_have_text(
                "Ingen kontakt med serveren – videoen går fortsatt. Kobler til igjen …")
        await frames_advance(specialist, "video plays on with the server down")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await specialist.screenshot(path=str(SCREENSHOTS / "specialist-server-unreachable.png"))
        publish_screenshots(SCREENSHOTS / "specialist-server-unreachable.png")
        for page in pages:
            await expect(page.locator("#status")).to_have_attribute("data-i18n", "status.serverUnreachable")
        assert not call.page_errors, call.page_errors


async def test_the_lead_page_logs_in_again_with_a_password_or_single_sign_on(
    start_server: Callable[..., Awaitable[RunningServer]], expect: Any
) -> None:
    """The pilot lead's page has the same dialog: a CSV download that met the 401 follows a
    password login; single sign-on runs in a window of its own, which closes when done."""
    provider = await OidcProvider(claims={PID_CLAIM: NATIONAL_ID}).start()
    try:
        server = await start_server(**oidc_settings(provider))
        lead = await server.add_user("pilotleder", PASSWORD, {"east": StaffRole.PILOT_LEAD})
        async with server.app[SERVICES].database.sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == lead).values(oidc_subject=NATIONAL_ID))
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                context = await browser.new_context(viewport=DESKTOP, locale="en-GB")
                page = await context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                await log_in(page, server.url, "pilotleder", "/lead")
                await expect(page.locator("#lead-status")).to_have_attribute("data-i18n", "lead.loaded")
                await page.evaluate(MARK_PAGE)

                await server.app[SERVICES].accounts.end_sessions(lead)
                async with page.expect_download() as download_info:
                    await page.click("#figures-csv")
                    await expect(page.locator("#relogin h2")).to_have_text("You are logged out – log in again")
                    await log_in_again(page, "pilotleder")
                download = await download_info.value
                assert download.suggested_filename == "pilot-figures.csv"
                await expect(page.locator("#relogin")).to_have_count(0)

                await server.app[SERVICES].accounts.end_sessions(lead)
                await page.click("#filter button[type=submit]")
                async with context.expect_page() as popup_info:
                    await page.click("#relogin a")
                popup = await popup_info.value
                await expect(page.locator("#relogin")).to_have_count(0)
                await expect(page.locator("#lead-status")).to_have_attribute("data-i18n", "lead.loaded")
                assert provider.authorize_requests, "the window did not go through the provider"
                if not popup.is_closed():
                    await popup.wait_for_event("close", timeout=UI_TIMEOUT_MS)
                assert await page.evaluate(PAGE_MARKED), "the page was reloaded"
            finally:
                await browser.close()
    finally:
        await provider.stop()


async def test_a_login_in_another_tab_is_taken_up_without_asking_twice(
    start_server: Callable[..., Awaitable[RunningServer]], expect: Any
) -> None:
    """Logged out in another tab: the dialog, which closes by itself once that tab logs in
    again. Logged out and in again there before this page noticed: the page's CSRF token is
    stale, and the session is taken up without a dialog."""
    server = await start_server()
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            context = await browser.new_context(viewport=PHONE, locale="nb-NO")
            page, other = await context.new_page(), await context.new_page()
            for tab in (page, other):
                tab.set_default_timeout(UI_TIMEOUT_MS)
            await log_in(page, server.url, "sykepleier", "/nurse")
            await page.evaluate(MARK_PAGE)

            async def relog_in_other_tab(*, log_in_again: bool) -> None:
                await other.goto(server.url + "/nurse")
                # The logout button does nothing until the page's module has run (as in log_in).
                await other.wait_for_load_state("networkidle", timeout=UI_TIMEOUT_MS)
                await other.click("#logout")
                await other.wait_for_url(server.url + "/")
                if log_in_again:
                    await log_in(other, server.url, "sykepleier", "/nurse")

            await relog_in_other_tab(log_in_again=False)
            await page.click("#register-toggle")
            await page.fill("#national-id", NATIONAL_ID)
            await page.fill("#patient-name", "Kari Nordmann")
            await page.click("#register-form button[type=submit]")
            await expect(page.locator("#relogin h2")).to_have_text("Du er logget ut – logg inn igjen")
            await log_in(other, server.url, "sykepleier", "/nurse")
            await expect(page.locator("#relogin")).to_have_count(0)
            await expect(page.locator("#identity-name")).to_have_text("Kari Nordmann")

            await relog_in_other_tab(log_in_again=True)
            await page.click("#register-toggle")
            await page.fill("#national-id", OTHER_NATIONAL_ID)
            await page.fill("#patient-name", "Ola Nordmann")
            await page.click("#register-form button[type=submit]")
            await expect(page.locator("#identity-name")).to_have_text("Ola Nordmann")
            await expect(page.locator("#relogin")).to_have_count(0)
            assert await page.evaluate(PAGE_MARKED), "the page was reloaded"
        finally:
            await browser.close()

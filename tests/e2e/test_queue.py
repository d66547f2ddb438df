"""The specialist's queue in real browsers: a nurse entering it chimes and raises a desktop
notification without patient data, the row says truthfully whether she is connected when
her page closes, and her consultation leaves the queue as abandoned after the window (3 s
here) and is counted so on the pilot lead's dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.e2e.browser import DESKTOP, PHONE, Traffic, async_playwright, eventually, launch
from tests.e2e.flows import NATIONAL_ID, PASSWORD, PATIENT, UI_TIMEOUT_MS, log_in, start_consultation
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import Consultation, ConsultationStatus
from woundcare.db.models import StaffRole

ABANDON_SECONDS = 3.0

ALERT_RECORDER = """
(() => {
  const shown = [];
  const tones = [];
  Object.defineProperty(window, '__notifications', { value: shown });
  Object.defineProperty(window, '__tones', { value: tones });
  const Native = window.Notification;
  window.Notification = class extends Native {
    constructor(title, options = {}) { super(title, options); shown.push({ title, body: options.body ?? '' }); }
  };
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) { tones.push(this.frequency.value); return start.apply(this, args); };
})();
"""
"""Records each notification the page constructs and each tone it starts."""


async def test_a_nurse_entering_the_queue_alerts_and_an_abandoned_one_leaves(
    start_server: Callable[..., Awaitable[RunningServer]],
) -> None:
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    server = await start_server(abandon_seconds=ABANDON_SECONDS, grace_seconds=1.0)
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
    await server.add_user("pilotleder", PASSWORD, {"east": StaffRole.PILOT_LEAD})
    origin = server.url
    traffic = Traffic(origin)
    page_errors: list[str] = []
    async with playwright_context as playwright:
        browser = await launch(playwright)
        try:
            specialist_context = await browser.new_context(viewport=DESKTOP, locale="nb-NO")
            await specialist_context.grant_permissions(["notifications"], origin=origin)
            await specialist_context.add_init_script(ALERT_RECORDER)
            nurse_context = await browser.new_context(viewport=PHONE, locale="nb-NO")
            specialist, nurse = await specialist_context.new_page(), await nurse_context.new_page()
            for page in (specialist, nurse):
                traffic.watch(page)
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                page.set_default_timeout(UI_TIMEOUT_MS)

            # --- the specialist waits on an empty queue; a click lets the page play sound -----
            await log_in(specialist, origin, "spesialist", "/specialist")
            await expect(specialist.locator("#queue-status")).to_have_text("Ingen venter.")
            await expect(specialist.locator("#queue-alerts")).to_have_attribute("aria-pressed", "false")
            await specialist.click("#queue-heading")

            # --- a nurse enters the queue: connected, a chime and a notification ------------
            await log_in(nurse, origin, "sykepleier", "/nurse")
            await start_consultation(nurse, NATIONAL_ID, PATIENT, "snapshots")
            row = specialist.locator("#queue-body tr")
            await expect(row).to_have_count(1)
            await expect(row.locator(".queue-patient")).to_have_text(PATIENT)
            await expect(row.locator(".queue-region")).to_have_text("Region east")
            await expect(row.locator(".queue-nurse")).to_have_attribute("data-nurse", "joined")
            await expect(row.locator(".queue-nurse")).to_have_text("Tilkoblet")
            shown = await eventually(
                lambda: specialist.evaluate("window.__notifications"), bool, 10, "a notification"
            )
            assert shown == [{"title": "En sykepleier venter (Region east)", "body": "Åpne køen for å bli med."}]
            assert PATIENT not in str(shown) and NATIONAL_ID not in str(shown)
            assert await specialist.evaluate("window.__tones") == [660, 880]

            # --- the mute toggle is remembered across a reload --------------------------------
            await specialist.click("#queue-alerts")
            await specialist.reload()
            await expect(specialist.locator("#queue-alerts")).to_have_attribute("aria-pressed", "true")
            await expect(specialist.locator("#queue-alerts")).to_have_text("Varsler dempet")
            await expect(row.locator(".queue-nurse")).to_have_attribute("data-nurse", "joined")

            # --- her page closes: not connected, then abandoned after the window ---------------
            consultation = await row.get_attribute("data-consultation")
            await nurse.close()
            await expect(row.locator(".queue-nurse")).not_to_have_attribute("data-nurse", "joined")
            await expect(row.locator(".queue-nurse")).to_have_attribute("data-nurse", "absent")
            await expect(row.locator(".queue-nurse")).to_contain_text("Ikke tilkoblet")
            await expect(row).to_have_count(0)
            await expect(specialist.locator("#queue-status")).to_have_text("Ingen venter.")
            async with server.app[SERVICES].database.sessions() as session:
                found = await session.get(Consultation, consultation)
                assert found is not None and found.status is ConsultationStatus.ABANDONED

            # --- the pilot lead counts it as abandoned, not as no outcome ---------------------
            lead = await browser.new_context(viewport=DESKTOP, locale="nb-NO")
            dashboard = await lead.new_page()
            traffic.watch(dashboard)
            await log_in(dashboard, origin, "pilotleder", "/lead")
            card = dashboard.locator('.region-card[data-region="east"]')
            await expect(card.locator('[data-figure="consultations"]')).to_have_text("1")
            await expect(card.locator('[data-figure="abandoned"]')).to_have_text("1")
        finally:
            await browser.close()
    assert page_errors == []
    assert traffic.foreign == [], f"requests outside the server: {traffic.foreign}"

"""The specialist page saves the assessment with If-Match, and says so when someone else
changed it meanwhile (issue 15, finding 3), in Chromium against the real server."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.api.client import ApiClient
from tests.e2e.browser import async_playwright, launch
from woundcare.db.models import StaffRole

PASSWORD = "stale editor password"
UI_TIMEOUT_MS = 20_000


async def test_a_stale_page_is_told_and_overwrites_nothing(start_server: Any) -> None:
    server = await start_server(ice_transport_policy="relay")
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    consultation = await server.new_consultation("east")
    path = f"/api/consultations/{consultation}/assessment"
    other_tab = ApiClient(server.url)
    await other_tab.login("spes", PASSWORD)
    try:
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            page = await (await browser.new_context(locale="en-GB")).new_page()
            expect.set_options(timeout=UI_TIMEOUT_MS)
            await page.goto(server.url + "/")
            await page.fill("#username", "spes")
            await page.fill("#password", PASSWORD)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_url(server.url + "/specialist", timeout=UI_TIMEOUT_MS)
            await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()
            # The call view shows its state once all its controls listen; a submit before that
            # would reload the page.
            await expect(page.locator("#status")).to_have_attribute("data-state", re.compile(".+"))

            form = page.locator("#assessment-form")
            status = page.locator("#assessment-status")
            await form.locator("textarea[name=treatmentPlan]").fill("from the page")
            await form.locator("button[type=submit]").click()
            await expect(status).to_have_attribute("data-i18n", "assessment.saved")

            # Another tab saves over the version the page holds.
            await other_tab.json("PUT", path, json={"treatmentPlan": "from the other tab"})
            await form.locator("textarea[name=treatmentPlan]").fill("stale page")
            await form.locator("button[type=submit]").click()
            await expect(status).to_have_attribute("data-i18n", "assessment.error.stale")
            await expect(status).to_contain_text("Someone else changed this assessment")
            await browser.close()
        assert (await other_tab.json("GET", path))["treatmentPlan"] == "from the other tab"
    finally:
        await other_tab.close()

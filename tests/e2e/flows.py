"""Steps through the pages that several browser tests take: logging in, and a nurse
starting a consultation for a new patient."""

from __future__ import annotations

from typing import Any

UI_TIMEOUT_MS = 15_000
"""Bound on any one wait for the pages."""
PHONE = {"width": 412, "height": 915}
"""The nurse's phone."""
DESKTOP = {"width": 1440, "height": 900}
"""The specialist's and the pilot lead's desktop."""


async def log_in(page: Any, origin: str, username: str, landing: str, *, password: str) -> None:
    """Through the login page to the role's ``landing`` page."""
    await page.goto(origin + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(origin + landing, timeout=UI_TIMEOUT_MS)


async def start_visit(nurse: Any, national_id: str, name: str) -> None:
    """On the nurse's page: register the patient, confirm the identity, consent to video and
    snapshots, start; returns once the page waits for a specialist."""
    from playwright.async_api import expect

    await nurse.click("#register-toggle")
    await nurse.fill("#national-id", national_id)
    await nurse.fill("#patient-name", name)
    await nurse.click("#register-form button[type=submit]")
    await expect(nurse.locator("#identity-name")).to_have_text(name, timeout=UI_TIMEOUT_MS)
    await nurse.check("#identity-confirmed")
    await nurse.check("#consent-form input[name=video]")
    await nurse.check("#consent-form input[name=snapshots]")
    await nurse.click("#start")
    await expect(nurse.locator("#status")).to_have_attribute("data-state", "waiting", timeout=UI_TIMEOUT_MS)

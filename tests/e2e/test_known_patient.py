"""The nurse's registration form with a national id her region knows (Chromium): the page
finds the patient by number, registers nothing, continues with the patient registered first
and says so."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from tests.e2e.browser import PHONE, async_playwright, launch
from tests.e2e.flows import NATIONAL_ID, PASSWORD, PATIENT, UI_TIMEOUT_MS, log_in, register_patient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent, Patient
from woundcare.db.models import StaffRole


async def test_registering_a_known_number_continues_with_that_patient(
    start_server: Callable[..., Awaitable[RunningServer]],
) -> None:
    async_playwright()  # a skip (a failure in CI) without Playwright or Chromium
    from playwright.async_api import expect

    server = await start_server()
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page: Any = await (await browser.new_context(viewport=PHONE, locale="nb-NO")).new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            await log_in(page, server.url, "sykepleier", "/nurse")
            await register_patient(page, NATIONAL_ID, PATIENT)
            await expect(page.locator("#register-existing")).to_be_hidden()
            first = await page.locator("#patient-select").input_value()

            # The same number, spaced, under another name: the patient registered first.
            await page.click("#register-toggle")
            await page.fill("#national-id", "010180 12371")
            await page.fill("#patient-name", "Kari Feilskrevet")
            await page.click("#register-form button[type=submit]")
            note = page.locator("#register-existing")
            await expect(note).to_have_text(
                "Pasienten er allerede registrert: du fortsetter med den eksisterende journalen.",
                timeout=UI_TIMEOUT_MS,
            )
            await expect(page.locator("#identity-name")).to_have_text(PATIENT)
            await expect(page.locator("#identity-nid")).to_have_text(NATIONAL_ID)
            await expect(page.locator("#patient-select")).to_have_value(first)
            await expect(page.locator("#patient-select option")).to_have_count(2)  # "choose" and her
            await expect(page.locator("#register-form")).to_be_hidden()
            # The note belongs to that continuation only: choosing again clears it.
            await page.select_option("#patient-select", "")
            await page.select_option("#patient-select", first)
            await expect(note).to_be_hidden()
        finally:
            await browser.close()

    async with server.app[SERVICES].database.sessions() as session:
        patients = (await session.scalars(select(Patient.pseudonym))).all()
        audited = (await session.execute(
            select(AuditEvent.action, AuditEvent.resource)
            .where(AuditEvent.action.in_(("patient.list", "patient.create")), AuditEvent.resource.like("patient:%"))
            .order_by(AuditEvent.seq)
        )).all()
    assert patients == [first]
    # Looked up by number (in the body) before each registration; the second registered nothing.
    assert [tuple(row) for row in audited] == [
        ("patient.list", "patient:none"), ("patient.create", f"patient:{first}"), ("patient.list", f"patient:{first}"),
    ]

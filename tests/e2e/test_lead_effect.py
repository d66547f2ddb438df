"""The lead page's evidence of effect, date filter, export links and travel form in Chromium.

The effect pilot of ``tests.pilot.test_effect`` (60 wounds with known healing curves over
three regions) is seeded; the lead serves two regions. Through the login page to ``/lead``:
the effect cards show what ``/api/pilot/effect`` computes, each wound's area curve is drawn,
a from/to filter reaches the figures and every download link, the FHIR link's MeasureReports
validate with fhir.resources, and the travel form saves a municipality's distance that then
lists in the table and in the nurse's registration form, where a patient is registered in it.
Screenshot: ``lead-effect.png``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.browser import Traffic, async_playwright, launch, publish_screenshots
from tests.e2e.test_dashboard import logged_in
from tests.e2e.process import REPO_ROOT
from tests.pilot.test_effect import REGIONS, seed_effect
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import Consultation, ConsultationKind, Patient, Region, StaffRole, Urgency

PASSWORD = "lead effect test password"
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
UI_TIMEOUT_MS = 15_000
MINE, FOREIGN = ("ea", "eb"), "ec"
FROM, TO = "2025-03-10", "2025-04-05"
CARD_FIGURES: dict[str, tuple[str, ...]] = {
    "wounds": ("wounds",),
    "measured": ("measured",),
    "reduction-median": ("areaReduction4w", "medianPct"),
    "reduction-wounds": ("areaReduction4w", "values"),
    "healed": ("healing", "healed"),
    "healing-median": ("healing", "medianDays"),
    "share-home": ("outcomes", "shareAtHome"),
    "re-referred": ("reReferrals", "count"),
}
"""A card's data-figure and where its value is in the API's region."""
DOWNLOADS = {
    "#figures-csv": "/api/pilot/figures.csv",
    "#sessions-csv": "/api/pilot/sessions.csv",
    "#effect-csv": "/api/pilot/effect.csv",
    "#wounds-csv": "/api/pilot/wounds.csv",
    "#effect-fhir": "/api/pilot/effect.fhir",
}


async def send_econsult(server: RunningServer, region: str) -> None:
    """One urgent e-consult, unanswered, about a patient of ``region`` (a row as the API makes it)."""
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        region_id = await session.scalar(select(Region.id).where(Region.code == region))
        patient_id = await session.scalar(select(Patient.id).where(Patient.region_id == region_id).limit(1))
        assert region_id is not None and patient_id is not None
        session.add(Consultation(region_id=region_id, patient_id=patient_id, kind=ConsultationKind.ECONSULT,
                                 urgency=Urgency.URGENT))


async def check_effect_cards(page: Any, expect: Any, regions: list[dict[str, Any]]) -> None:
    for f in regions:
        card = page.locator(f'#effect-cards .region-card[data-region="{f["region"]}"]')
        for key, path in CARD_FIGURES.items():
            want = functools.reduce(operator.getitem, path, f)
            await expect(card.locator(f'[data-figure="{key}"]')).to_have_attribute(
                "data-value", "" if want is None else str(want))


async def test_lead_effect_filter_exports_and_travel_form(start_server: Callable[..., Awaitable[RunningServer]]) -> None:
    bundle_model = pytest.importorskip("fhir.resources.R4B.bundle").Bundle
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    server = await start_server()
    wounds = await seed_effect(server)
    await send_econsult(server, MINE[0])
    for name, role in (("effektleder", StaffRole.PILOT_LEAD), ("effektsykepleier", StaffRole.NURSE)):
        await server.add_user(name, PASSWORD, dict.fromkeys(MINE, role))
    origin, page_errors = server.url, list[str]()
    traffic = Traffic(origin)
    shot = SCREENSHOTS / "lead-effect.png"

    async with playwright_context as playwright:
        browser = await launch(playwright)
        try:
            context, page = await logged_in(browser, traffic, page_errors, origin, ("effektleder", PASSWORD), "/lead")

            # --- the effect cards and curves match the API, all time ------------------------
            effect = await (await context.request.get(origin + "/api/pilot/effect")).json()
            assert [r["region"] for r in effect["regions"]] == list(MINE)
            await expect(page.locator("#effect-cards .region-card")).to_have_count(2)
            await check_effect_cards(page, expect, effect["regions"])
            curves = page.locator("#wound-curves svg.chart")
            await expect(curves).to_have_count(2)
            for index, code in enumerate(MINE):
                measured = [w for w in effect["wounds"] if w["region"] == code and w["areas"]]
                await expect(curves.nth(index).locator("g.chart-line")).to_have_count(len(measured))
                one = measured[0]
                line = curves.nth(index).locator(f'g.chart-line[data-line="{one["patient"]}"]')
                dots = len(one["areas"]) + (1 if one["healedAt"] else 0)
                await expect(line).to_have_attribute("data-points", str(dots))
            # E-consults, counted apart: the one sent in the first region, waiting and urgent.
            econsults = (await (await context.request.get(origin + "/api/pilot/econsults")).json())["regions"]
            assert [(r["region"], r["sent"], r["byUrgency"]["urgent"]) for r in econsults] == [(MINE[0], 1, 1), (MINE[1], 0, 0)]
            for r in econsults:
                card = page.locator(f'#econsult-cards .region-card[data-region="{r["region"]}"]')
                await expect(card.locator('[data-figure="econsults-sent"]')).to_have_text(str(r["sent"]))
                await expect(card.locator('[data-figure="econsults-open"]')).to_have_text(str(r["open"]))
                await expect(card.locator('[data-figure="econsults-urgent"]')).to_have_text(str(r["byUrgency"]["urgent"]))

            # Pseudonyms of the region the lead does not serve appear nowhere.
            body_text = await page.locator("body").inner_text()
            assert REGIONS[FOREIGN] not in body_text
            assert not any(w.pseudonym in body_text for w in wounds if w.region == FOREIGN)

            # --- the date filter reaches every figure and every download --------------------
            await page.fill("#from", FROM)
            await page.fill("#to", TO)
            await page.click("#filter button[type=submit]")
            query = f"?from={FROM}&to={TO}"
            for selector, path in DOWNLOADS.items():
                await expect(page.locator(selector)).to_have_attribute("href", path + query)
            filtered = await (await context.request.get(origin + "/api/pilot/effect" + query)).json()
            assert sum(r["wounds"] for r in filtered["regions"]) < sum(r["wounds"] for r in effect["regions"])
            await check_effect_cards(page, expect, filtered["regions"])
            figures = await (await context.request.get(origin + "/api/pilot/figures" + query)).json()
            for f in figures["regions"]:
                await expect(page.locator(f'#figure-cards .region-card[data-region="{f["region"]}"] '
                                          '[data-figure="consultations"]')).to_have_text(str(f["consultations"]))
            await expect(page.locator("#sessions-body tr[data-session]")).to_have_count(
                len((await (await context.request.get(origin + "/api/pilot/sessions" + query)).json())["sessions"]))

            # --- the links download: CSVs, and the FHIR MeasureReports validate -------------
            for selector in DOWNLOADS:
                href = await page.locator(selector).get_attribute("href")
                assert href is not None
                response = await context.request.get(origin + href)
                assert response.status == 200, (href, response.status)
                text = await response.text()
                assert REGIONS[FOREIGN] not in text
            async with page.expect_download() as download_info:
                await page.click("#effect-fhir")
            download = await download_info.value
            assert download.suggested_filename == "pilot-effect.fhir.json"
            path = await download.path()
            bundle = bundle_model.model_validate_json(path.read_text())
            reports = [entry.resource for entry in bundle.entry or []]
            assert [r.reporter.identifier.value for r in reports] == list(MINE)
            assert [(str(r.period.start), str(r.period.end)) for r in reports] == [(FROM, TO)] * 2
            wounds_in = {r["region"]: r["wounds"] for r in filtered["regions"]}
            for report in reports:
                population = {p.code.coding[0].code: p.count for p in report.group[0].population}
                assert population["initial-population"] == wounds_in[report.reporter.identifier.value]
            async with page.expect_download() as download_info:
                await page.click("#wounds-csv")
            assert (await download_info.value).suggested_filename == "pilot-wounds.csv"

            # --- the travel form: a distance saved lists in the table ------------------------
            options = await page.locator("#travel-region option").evaluate_all("(os) => os.map((o) => o.value)")
            assert options == list(MINE), options
            await page.select_option("#travel-region", "eb")
            await page.fill("#travel-municipality", "3430 Os")
            await page.fill("#travel-km", "260")
            await page.fill("#travel-hours", "3.5")
            await page.click("#travel-form button[type=submit]")
            await expect(page.locator("#travel-status")).to_have_text("Lagret: 3430 Os.")
            row = page.locator('#travel-body tr[data-municipality="3430 Os"]')
            await expect(row).to_have_count(1)
            await expect(row.locator("td").nth(1)).to_have_text("260")
            table = await (await context.request.get(origin + "/api/pilot/travel?region=eb")).json()
            assert table["municipalities"] == [{"municipality": "3430 Os", "km": 260.0, "hours": 3.5}]
            # Changing it replaces the distance, one row still.
            await page.fill("#travel-municipality", "3430 Os")
            await page.fill("#travel-km", "250")
            await page.fill("#travel-hours", "3")
            await page.click("#travel-form button[type=submit]")
            await expect(row.locator("td").nth(1)).to_have_text("250")
            await expect(page.locator("#travel-body tr")).to_have_count(1)
            await page.select_option("#travel-region", "ea")
            await expect(page.locator("#travel-body tr")).to_have_count(0)

            await page.evaluate("window.scrollTo(0, 0)")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot), full_page=True)

            # --- a nurse of that region registers a patient there, from the list -------------
            nurse_context, nurse = await logged_in(
                browser, traffic, page_errors, origin, ("effektsykepleier", PASSWORD), "/nurse")
            await nurse.click("#register-toggle")
            await nurse.select_option("#region-select", "eb")
            choices = nurse.locator("#municipality-select option")
            await expect(choices).to_have_count(2)
            assert await choices.evaluate_all("(os) => os.map((o) => o.value)") == ["", "3430 Os"]
            await nurse.fill("#national-id", "010180 12371")
            await nurse.fill("#patient-name", "Kari Nordmann")
            await nurse.select_option("#municipality-select", "3430 Os")
            await nurse.click("#register-form button[type=submit]")
            await expect(nurse.locator("#register-form")).to_be_hidden()
            await nurse_context.close()
        finally:
            await browser.close()

    async with server.app[SERVICES].database.sessions() as session:
        registered = (await session.execute(
            select(Patient.municipality, Region.code).join(Region, Region.id == Patient.region_id)
            .where(Patient.municipality.is_not(None))
        )).all()
    assert [tuple(r) for r in registered] == [("3430 Os", "eb")]
    assert not page_errors, page_errors
    assert not traffic.foreign, traffic.foreign
    publish_screenshots(shot)

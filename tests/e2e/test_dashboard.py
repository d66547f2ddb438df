"""The pilot lead's dashboard (``/lead``) in a real browser.

A pilot of 500 consultations over three regions is seeded (``tests.pilot.test_figures.seed``);
the lead is a member of two of them. Through the login page to ``/lead``: the SVG charts are
drawn, the figure cards show what the API returns, a session's event log opens by keyboard,
the CSV links download, the third region appears nowhere, and the page loads nothing from
outside the server. Screenshot: ``lead-dashboard.png`` (desktop), to ``artifacts/screenshots/``
and, after a passing run, ``docs/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.e2e.browser import Traffic, async_playwright, launch, publish_screenshots
from tests.e2e.process import REPO_ROOT
from tests.pilot.test_figures import REGIONS, seed
from tests.server import RunningServer
from woundcare.db.models import StaffRole

PASSWORD = "dashboard test password"
DESKTOP = {"width": 1440, "height": 900}
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
UI_TIMEOUT_MS = 15_000
MINE, FOREIGN = ("pa", "pb"), "pc"


async def logged_in(
    browser: Any, traffic: Traffic, page_errors: list[str], origin: str, user: tuple[str, str], landing: str
) -> tuple[Any, Any]:
    """A new desktop context (Norwegian) and page, watched, logged in through the login page as
    ``user`` (name, password) and landed on ``landing``."""
    context = await browser.new_context(viewport=DESKTOP, locale="nb-NO", accept_downloads=True)
    page = await context.new_page()
    traffic.watch(page)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.set_default_timeout(UI_TIMEOUT_MS)
    await page.goto(origin + "/")
    await page.fill("#username", user[0])
    await page.fill("#password", user[1])
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(origin + landing, timeout=UI_TIMEOUT_MS)
    return context, page


async def test_pilot_lead_dashboard(start_server: Callable[..., Awaitable[RunningServer]]) -> None:
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    server = await start_server()
    await seed(server)
    await server.add_user("pilotleder", PASSWORD, {code: StaffRole.PILOT_LEAD for code in MINE})
    origin = server.url
    traffic = Traffic(origin)
    page_errors: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "lead-dashboard.png"

    async with playwright_context as playwright:
        browser = await launch(playwright)
        try:
            # --- log in through the page; a pilot lead lands on /lead ------------------------
            context, page = await logged_in(browser, traffic, page_errors, origin, ("pilotleder", PASSWORD), "/lead")
            await expect(page.locator("#user-name")).to_have_text("Test pilotleder")

            # --- the region selector: the lead's two regions, not the third ------------------
            options = await page.locator("#region option").evaluate_all("(os) => os.map((o) => o.value)")
            assert options == ["", *MINE], options

            # --- the figure cards match the API ----------------------------------------------
            api = await context.request.get(origin + "/api/pilot/figures")
            assert api.status == 200
            figures = (await api.json())["regions"]
            assert [f["region"] for f in figures] == list(MINE)
            cards = page.locator("#figure-cards .region-card")
            await expect(cards).to_have_count(2)
            for f in figures:
                card = page.locator(f'#figure-cards .region-card[data-region="{f["region"]}"]')
                await expect(card.locator("h3")).to_have_text(f["name"])
                await expect(card.locator('[data-figure="consultations"]')).to_have_text(str(f["consultations"]))
                await expect(card.locator('[data-figure="reconnections"]')).to_have_text(str(f["reconnections"]["count"]))
                await expect(card.locator('[data-figure="treated-at-home"]')).to_have_text(
                    str(f["outcomes"]["treatedAtHome"]))
                await expect(card.locator('[data-figure="referred"]')).to_have_text(str(f["outcomes"]["referred"]))
                raw = {
                    "wait-median": f["waitSeconds"]["median"],
                    "wait-p90": f["waitSeconds"]["p90"],
                    "duration-median": f["durationSeconds"]["median"],
                    "snapshots-per": f["snapshots"]["perConsultation"],
                    "travel-km": f["travelAvoided"]["km"],
                    "travel-hours": f["travelAvoided"]["hours"],
                }
                for key, want in raw.items():
                    got = await card.locator(f'[data-figure="{key}"]').get_attribute("data-value")
                    assert got is not None and float(got) == want, (f["region"], key, got, want)
                assert await card.locator(".figure-note").count() == 2  # travel: "estimate"
                await expect(card.locator(".figure-note").first).to_contain_text("Anslag")

            # --- the charts: SVG bars for each region ----------------------------------------
            charts = page.locator("#charts svg.chart")
            await expect(charts).to_have_count(4)
            bars = await page.locator("#charts svg.chart rect.bar").count()
            assert bars > 0, bars
            consultations_chart = charts.nth(0)
            for f in figures:
                await expect(consultations_chart.locator("text.chart-label", has_text=f["name"])).to_have_count(1)
                stacked = await consultations_chart.locator(f'rect.bar[data-group="{f["name"]}"]').evaluate_all(
                    "(rs) => rs.map((r) => Number(r.dataset.value))")
                assert sum(stacked) == f["consultations"], (f["region"], stacked)
                height = await consultations_chart.locator(f'rect.bar[data-group="{f["name"]}"]').first.get_attribute(
                    "height")
                assert height is not None and float(height) > 0

            # --- the session list, with an event log opened by keyboard ----------------------
            api_sessions = await context.request.get(origin + "/api/pilot/sessions")
            sessions = (await api_sessions.json())["sessions"]
            assert sessions and {s["region"] for s in sessions} == set(MINE)
            await expect(page.locator("#sessions-body tr[data-session]")).to_have_count(len(sessions))
            with_events = next(s for s in sessions if s["reconnections"] > 0)
            row = page.locator(f'#sessions-body tr[data-session="{with_events["id"]}"]')
            toggle = row.locator("button[aria-expanded]")
            await toggle.focus()
            await page.keyboard.press("Enter")
            await expect(toggle).to_have_attribute("aria-expanded", "true")
            log = page.locator(f'[id="log-{with_events["id"]}"] .event-log li')
            await expect(log).to_have_count(len(with_events["events"]))
            await expect(page.locator(f'[id="log-{with_events["id"]}"]')).to_contain_text("mistet forbindelsen")

            # --- nothing of the third region anywhere ----------------------------------------
            body = await page.locator("body").inner_text()
            assert REGIONS[FOREIGN].lstrip("=") not in body
            assert await page.locator(f'[data-region="{FOREIGN}"]').count() == 0

            # --- one region selected: the query reaches cards and CSV links ------------------
            await page.select_option("#region", "pb")
            await expect(cards).to_have_count(1)
            await expect(page.locator('#figure-cards .region-card[data-region="pb"]')).to_have_count(1)
            await expect(page.locator("#figures-csv")).to_have_attribute("href", "/api/pilot/figures.csv?region=pb")
            await page.select_option("#region", "")
            await expect(cards).to_have_count(2)

            # --- the CSV links download -------------------------------------------------------
            for link in ("#figures-csv", "#sessions-csv"):
                href = await page.locator(link).get_attribute("href")
                assert href and href.startswith("/api/pilot/") and ".csv" in href
                response = await context.request.get(origin + href)
                assert response.status == 200, (href, response.status)
                assert response.headers["content-type"].startswith("text/csv"), response.headers
                text = await response.text()
                assert REGIONS[FOREIGN].lstrip("=") not in text and ",pc," not in text
            async with page.expect_download() as download_info:
                await page.click("#figures-csv")
            download = await download_info.value
            assert download.suggested_filename == "pilot-figures.csv"

            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(shot), full_page=True)  # 1440 wide: cards, charts and table
        finally:
            await browser.close()

    assert not page_errors, page_errors
    assert not traffic.foreign, traffic.foreign
    publish_screenshots(shot)

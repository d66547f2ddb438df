"""Evidence of effect against a seeded pilot with known healing curves.

60 wounds (one per patient) over three regions are written straight into the database from a
seeded RNG: each has a starting area, a course (healing linearly to a known day, healing
slowly, growing, never measured, referred, re-referred soon or late) and a visit every 5 to 9
days with a measured snapshot and a signed outcome. The expected figures are worked out here
in plain Python from the seed's own records (not with :mod:`woundcare.pilot.effect`), on SQLite
and PostgreSQL alike; the FHIR export validates with fhir.resources.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, update

from tests.pilot.test_figures import PASSWORD, csv_rows, login
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.cli import main
from woundcare.db.models import Assessment, Consultation, ConsultationStatus, Patient, Region, Snapshot, StaffRole
from woundcare.records.patients import PatientIdentity, valid_national_id

REGIONS = {"ea": "Region East", "eb": "Region West", "ec": "Region North"}
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
OSLO = ZoneInfo("Europe/Oslo")
COURSES = ("heals", "heals", "heals", "slow", "grows", "unmeasured", "referred", "re_referred_soon", "re_referred_late")
EFFECT_HEADER = [
    "region", "region_name", "wounds", "measured", "area_reduction_4w_wounds", "area_reduction_4w_median_pct",
    "area_reduction_4w_at_least_40", "healed", "open", "days_to_healing_median", "days_to_healing_p90",
    "treated_at_home", "referred", "no_outcome", "share_at_home", "re_referred", "kept_at_home", "re_referral_share",
]


@dataclass
class Wound:
    """What the seed wrote for one patient: the truth the figures are checked against."""

    pseudonym: str
    region: str
    course: str
    first_at: datetime
    areas: list[tuple[datetime, float]] = field(default_factory=list)
    outcomes: list[tuple[datetime, str, bool]] = field(default_factory=list)
    """(consultation created, outcome, signed)."""


def area_on(course: str, a0: float, day: float, heal_day: float) -> float:
    if course == "heals":
        return round(a0 * max(0.02, 1 - day / heal_day), 2)
    if course == "grows":
        return round(a0 * (1 + 0.01 * day), 2)
    return round(a0 * (1 - 0.004 * day), 2)


def national_id(i: int) -> str:
    """A valid, distinct national id number per seeded patient (a pilot has no two alike)."""
    born = f"{i % 28 + 1:02d}{i // 28 + 1:02d}80"
    return next(n for n in (f"{born}{k:05d}" for k in range(100_000)) if valid_national_id(n))


async def seed_effect(server: RunningServer, seed: int = 18) -> list[Wound]:
    rng = random.Random(seed)
    wounds: list[Wound] = []
    services = server.app[SERVICES]
    region_ids: dict[str, int] = {}
    async with services.database.sessions() as session, session.begin():
        for code, name in REGIONS.items():
            region = Region(code=code, name=name)
            session.add(region)
            await session.flush()
            region_ids[code] = region.id
    # Identities sealed for real, so the nurse's page can list these patients too.
    registered: list[tuple[int, str]] = []
    for i in range(60):
        view = await services.patients.register(
            region_ids[list(REGIONS)[i % 3]], PatientIdentity(national_id(i), f"Pasient {i}"))
        found = await services.patients.find(view.pseudonym)
        assert found is not None
        registered.append((found.id, found.pseudonym))
    async with services.database.sessions() as session, session.begin():
        consultations, snapshots, assessments = [], [], []
        for i in range(60):
            code = list(REGIONS)[i % 3]
            patient_id, pseudonym = registered[i]
            course = COURSES[(i // 3) % len(COURSES)]
            first = START + timedelta(days=rng.randrange(0, 60), seconds=rng.randrange(0, 86400))
            wound = Wound(pseudonym, code, course, first)
            wounds.append(wound)
            a0, heal_day = round(rng.uniform(2, 30), 2), rng.uniform(12, 60)
            # The first wounds heal on a day known to land in the 4-week window or before it.
            if i == 0:
                heal_day = 15.0
            elif i == 1:
                heal_day = 26.0
            day, visit = 0.0, 0
            while day <= 75:
                created = first + timedelta(days=day)
                cid = f"e{i:03d}v{visit:02d}"
                consultations.append({"id": cid, "region_id": region_ids[code], "patient_id": patient_id,
                                      "status": ConsultationStatus.ENDED, "created_at": created,
                                      "started_at": created + timedelta(minutes=2),
                                      "ended_at": created + timedelta(minutes=30)})
                # The first visit's photo is sometimes not measured: the baseline comes later.
                measured = course != "unmeasured" and (visit > 0 or rng.random() < 0.8)
                taken = created + timedelta(minutes=10)
                healed = course == "heals" and day >= heal_day
                area = area_on(course, a0, day, heal_day) if measured and not healed else None
                snapshots.append({
                    "id": f"{cid}s", "consultation_id": cid, "region_id": region_ids[code], "patient_id": patient_id,
                    "taken_at": taken, "taken_by": "u1", "media_type": "image/jpeg", "width": 64, "height": 48,
                    "size": 1000, "blob_key": f"blob-{cid}", "thumb_sealed": b"thumb", "key_id": "k1",
                    "area_cm2": area,
                })
                if area is not None:
                    wound.areas.append((taken, area))
                outcome: str | None
                if healed:
                    outcome = "healed"
                elif course == "referred" and visit == 2:
                    outcome = "referred"
                elif course.startswith("re_referred") and visit == 4:
                    outcome = "referred"
                else:
                    outcome = rng.choice(["treated_at_home", "treated_at_home", "treated_at_home", None])
                # Drafts don't count: some unsigned assessments say "healed" or "referred".
                signed = outcome is not None or rng.random() < 0.5
                if outcome is None and not signed:
                    outcome = rng.choice(["healed", "referred"])
                if outcome is not None:
                    assessments.append({"consultation_id": cid, "region_id": region_ids[code], "content_sealed": b"x",
                                        "outcome": outcome, "author": "u1", "updated_at": created,
                                        "signed_at": created + timedelta(minutes=40) if signed else None})
                    wound.outcomes.append((created, outcome, signed))
                if signed and outcome in ("healed", "referred"):
                    break
                visit += 1
                step = rng.randrange(5, 10)
                # The late re-referral comes 31 to 45 days after the last visit that kept it at home.
                if course == "re_referred_late" and visit == 4:
                    step = rng.randrange(31, 46)
                day += step + rng.random() / 3
        await session.execute(insert(Consultation), consultations)
        await session.execute(insert(Snapshot), snapshots)
        await session.execute(insert(Assessment), assessments)
    return wounds


# ---- the expected figures, in plain Python --------------------------------------------------


def nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def days_between(a: datetime, b: datetime) -> float:
    return (b - a) / timedelta(days=1)


def expected_wound(w: Wound) -> dict[str, Any]:
    signed = [(at, outcome) for at, outcome, ok in sorted(w.outcomes) if ok]
    healed_at = next((at for at, outcome in signed if outcome == "healed"), None)
    areas = sorted(w.areas)
    reduction = week4 = None
    if areas:
        t0, a0 = areas[0]
        curve = list(areas)
        if healed_at is not None and healed_at >= t0:
            curve.append((healed_at, 0.0))
        if healed_at is not None and healed_at >= t0 and days_between(t0, healed_at) < 21:
            week4 = 0.0
        else:
            best = None
            for at, area in curve:
                d = days_between(t0, at)
                if 21 <= d <= 35 and (best is None or abs(d - 28) < abs(best[0] - 28)
                                      or (abs(d - 28) == abs(best[0] - 28) and d < best[0])):
                    best = (d, area)
            week4 = None if best is None else best[1]
        if week4 is not None:
            reduction = round(100 * (a0 - week4) / a0, 3)
    kinds = {outcome for _, outcome in signed}
    disposition = "referred" if "referred" in kinds else ("treated_at_home" if kinds & {"treated_at_home", "healed"}
                                                          else None)
    homes = [at for at, outcome in signed if outcome in ("treated_at_home", "healed")]
    re_referred = any(0 < days_between(h, at) <= 30 for at, outcome in signed if outcome == "referred" for h in homes)
    return {
        "patient": w.pseudonym,
        "baselineCm2": areas[0][1] if areas else None,
        "week4Cm2": week4,
        "reductionPct": reduction,
        "daysToHealing": None if healed_at is None else round(days_between(w.first_at, healed_at), 3),
        "outcome": disposition,
        "reReferred": re_referred,
        "areas": [{"at": at.isoformat(), "areaCm2": area} for at, area in areas],
        "keptAtHome": bool(homes),
    }


def expected_region(wounds: list[Wound], code: str) -> dict[str, Any]:
    mine = [expected_wound(w) for w in wounds if w.region == code]
    reductions = [w["reductionPct"] for w in mine if w["reductionPct"] is not None]
    healing = [w["daysToHealing"] for w in mine if w["daysToHealing"] is not None]
    home = sum(1 for w in mine if w["outcome"] == "treated_at_home")
    referred = sum(1 for w in mine if w["outcome"] == "referred")
    kept = sum(1 for w in mine if w["keptAtHome"])
    again = sum(1 for w in mine if w["reReferred"])
    return {
        "region": code,
        "name": REGIONS[code],
        "wounds": len(mine),
        "measured": sum(1 for w in mine if w["areas"]),
        "areaReduction4w": {
            "values": len(reductions),
            "medianPct": nearest_rank(reductions, 50),
            "atLeast40": sum(1 for r in reductions if r >= 40),
        },
        "healing": {
            "healed": len(healing),
            "open": len(mine) - len(healing),
            "medianDays": nearest_rank(healing, 50),
            "p90Days": nearest_rank(healing, 90),
        },
        "outcomes": {
            "treatedAtHome": home,
            "referred": referred,
            "none": len(mine) - home - referred,
            "shareAtHome": round(home / (home + referred), 4) if home + referred else None,
        },
        "reReferrals": {"count": again, "ofKeptAtHome": kept, "share": round(again / kept, 4) if kept else None,
                        "withinDays": 30},
    }


def in_period(wounds: list[Wound], first: date | None, last: date | None) -> list[Wound]:
    def inside(at: datetime) -> bool:
        day = at.astimezone(OSLO).date()
        return (first is None or day >= first) and (last is None or day <= last)

    return [w for w in wounds if inside(w.first_at)]


def cell(value: Any) -> str:
    """A value as the CSV writes it (RFC 4180 text; formula-like text prefixed with ')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(("=", "+", "-", "@")) else value
    return repr(value) if isinstance(value, float) else str(value)


def flat(region: dict[str, Any]) -> list[Any]:
    r, h, o, a = region["areaReduction4w"], region["healing"], region["outcomes"], region["reReferrals"]
    return [region["region"], region["name"], region["wounds"], region["measured"], r["values"], r["medianPct"],
            r["atLeast40"], h["healed"], h["open"], h["medianDays"], h["p90Days"], o["treatedAtHome"], o["referred"],
            o["none"], o["shareAtHome"], a["count"], a["ofKeptAtHome"], a["share"]]


@pytest.fixture
async def pilot(start_server: Callable[..., Awaitable[RunningServer]], db_url: str) -> tuple[RunningServer, list[Wound]]:
    server = await start_server(database_url=db_url)
    wounds = await seed_effect(server)
    await server.add_user("lead_e", PASSWORD, {"ea": StaffRole.PILOT_LEAD, "eb": StaffRole.PILOT_LEAD})
    await server.add_user("nurse_e", PASSWORD, {"ea": StaffRole.NURSE})
    return server, wounds


@pytest.mark.timeout(90)
async def test_effect_figures_match_the_seeded_curves(pilot: tuple[RunningServer, list[Wound]]) -> None:
    server, wounds = pilot
    lead = await login(server, "lead_e")
    try:
        body = await lead.json("GET", "/api/pilot/effect")
        assert [r["region"] for r in body["regions"]] == ["ea", "eb"]
        for got in body["regions"]:
            assert got == expected_region(wounds, got["region"]), got["region"]
        expected = {w.pseudonym: expected_wound(w) for w in wounds if w.region in ("ea", "eb")}
        assert {w["patient"] for w in body["wounds"]} == set(expected)
        for got in body["wounds"]:
            want = expected[got["patient"]]
            for key in ("baselineCm2", "week4Cm2", "reductionPct", "daysToHealing", "outcome", "reReferred", "areas"):
                assert got[key] == want[key], (got["patient"], key)

        # The seed reaches every branch of the definitions, in both regions together.
        every = [expected_wound(w) for w in wounds if w.region in ("ea", "eb")]
        assert any(w["week4Cm2"] == 0.0 for w in every)  # healed before or inside the window
        assert any(w["reductionPct"] is not None and w["reductionPct"] < 0 for w in every)  # grew
        assert any(w["baselineCm2"] is not None and w["reductionPct"] is None for w in every)  # no follow-up
        assert any(w["baselineCm2"] is None for w in every)  # never measured
        assert any(w["reReferred"] for w in every)
        assert any(w["outcome"] == "referred" and not w["reReferred"] and w["keptAtHome"] for w in every)  # late
        totals = [r["healing"]["healed"] for r in body["regions"]]
        assert all(n > 0 for n in totals), totals

        # A period picks the cohort by the first consultation's Norwegian day.
        query = "from=2025-03-10&to=2025-04-05"
        period = in_period(wounds, date(2025, 3, 10), date(2025, 4, 5))
        body = await lead.json("GET", f"/api/pilot/effect?{query}")
        assert (body["from"], body["to"]) == ("2025-03-10", "2025-04-05")
        for got in body["regions"]:
            assert got == expected_region(period, got["region"]), got["region"]
        assert 0 < sum(r["wounds"] for r in body["regions"]) < sum(1 for w in wounds if w.region != "ec")

        # The CSV: the same figures, a fixed header.
        response = await lead.request("GET", f"/api/pilot/effect.csv?{query}")
        assert response.status == 200 and response.content_type == "text/csv"
        header, rows = csv_rows(await response.text())
        assert header == EFFECT_HEADER
        assert [[row[c] for c in header] for row in rows] == [[cell(v) for v in flat(r)] for r in body["regions"]]
        header, rows = csv_rows(await (await lead.request("GET", f"/api/pilot/wounds.csv?{query}")).text())
        # A pseudonym may start with "-": the CSV defuses it as a spreadsheet formula with "'".
        by_cell = {cell(w.pseudonym): w for w in wounds}
        assert {row["patient"] for row in rows} == {cell(w.pseudonym) for w in period if w.region != "ec"}
        for row in rows:
            want = expected_wound(by_cell[row["patient"]])
            assert row["area_reduction_4w_pct"] == cell(want["reductionPct"])
            assert row["days_to_healing"] == cell(want["daysToHealing"])
            assert len([a for a in row["areas"].split("; ") if a]) == len(want["areas"])
    finally:
        await lead.close()


@pytest.mark.timeout(90)
async def test_the_measure_report_validates_and_carries_the_figures(pilot: tuple[RunningServer, list[Wound]]) -> None:
    bundle_model = pytest.importorskip("fhir.resources.R4B.bundle").Bundle
    report_model = pytest.importorskip("fhir.resources.R4B.measurereport").MeasureReport
    server, wounds = pilot
    lead = await login(server, "lead_e")
    nurse = await login(server, "nurse_e")
    try:
        response = await lead.request("GET", "/api/pilot/effect.fhir?from=2025-03-01&to=2025-04-30")
        assert response.status == 200 and response.content_type == "application/fhir+json"
        text = await response.text()
        for w in wounds:
            assert w.pseudonym not in text  # counts and medians only
        bundle = bundle_model.model_validate_json(text)
        reports = [report_model.model_validate(entry.resource.model_dump()) for entry in bundle.entry or []]
        assert [r.reporter.identifier.value for r in reports] == ["ea", "eb"]
        for report in reports:
            want = expected_region(wounds, report.reporter.identifier.value)
            assert (report.status, report.type, str(report.period.start), str(report.period.end)) == (
                "complete", "summary", "2025-03-01", "2025-04-30")
            groups = {g.code.coding[0].code: g for g in report.group or []}
            counts = {k: {p.code.coding[0].code: p.count for p in g.population or []} for k, g in groups.items()}
            assert counts["area-reduction-4w"] == {"initial-population": want["wounds"],
                                                   "denominator": want["areaReduction4w"]["values"],
                                                   "numerator": want["areaReduction4w"]["atLeast40"]}
            assert float(groups["area-reduction-4w"].measureScore.value) == pytest.approx(
                want["areaReduction4w"]["medianPct"])
            assert counts["time-to-healing"]["numerator"] == want["healing"]["healed"]
            assert float(groups["time-to-healing"].measureScore.value) == pytest.approx(want["healing"]["medianDays"])
            assert groups["time-to-healing"].measureScore.unit == "d"
            assert counts["treated-at-home"]["numerator"] == want["outcomes"]["treatedAtHome"]
            assert counts["re-referral"] == {"initial-population": want["wounds"],
                                             "denominator": want["reReferrals"]["ofKeptAtHome"],
                                             "numerator": want["reReferrals"]["count"]}

        # An open period still makes a valid report: from the first wound's day to today.
        open_bundle = bundle_model.model_validate_json(await (await lead.request("GET", "/api/pilot/effect.fhir")).text())
        assert open_bundle.entry and open_bundle.entry[0].resource.period.start is not None

        for path in ("effect", "effect.csv", "wounds.csv", "effect.fhir"):
            await lead.json("GET", f"/api/pilot/{path}?region=ec", expect=403)
            await nurse.json("GET", f"/api/pilot/{path}", expect=403)
    finally:
        await lead.close()
        await nurse.close()


async def test_an_annotated_outline_stores_its_area_plain(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The area the effect figures read is the measurement of the sealed annotations."""
    from woundcare.records.measurement import Annotations

    region_id = await server.region("ea")
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        patient = Patient(pseudonym="p-area", region_id=region_id, identity_sealed=b"x")
        session.add(patient)
        await session.flush()
        session.add(Consultation(id="c-area", region_id=region_id, patient_id=patient.id))
        await session.flush()
        session.add(Snapshot(id="s-area", consultation_id="c-area", region_id=region_id, patient_id=patient.id,
                             taken_by="u1", media_type="image/jpeg", width=64, height=48, size=10,
                             blob_key="b-area", thumb_sealed=b"t", key_id="k"))
    snapshots = server.app[SERVICES].snapshots
    row = await snapshots.get("s-area")
    assert row is not None and row.area_cm2 is None
    square = {"items": [], "reference": {"start": [0, 0], "end": [100, 0], "lengthCm": 2},
              "outline": {"points": [[10, 10], [60, 10], [60, 60], [10, 60]]}}
    view = await snapshots.annotate(row, Annotations.from_json(square))
    row = await snapshots.get("s-area")
    assert row is not None and row.area_cm2 == 1.0  # 50 px = 1 cm on a side
    assert view.json()["measurement"]["areaCm2"] == row.area_cm2  # type: ignore[index]

    # A snapshot measured before migration 0007 has no plain area: `woundcare pilot areas`
    # fills it from the sealed annotations, and a second run finds nothing left to do.
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(Snapshot).where(Snapshot.id == "s-area").values(area_cm2=None))
    data_dir = str(server.app[SERVICES].settings.data_dir)
    assert await asyncio.to_thread(main, ["pilot", "areas", "--data-dir", data_dir]) == 0
    assert "1 measured snapshots" in capsys.readouterr().out
    row = await snapshots.get("s-area")
    assert row is not None and row.area_cm2 == 1.0
    assert await snapshots.fill_areas() == 0

    await snapshots.annotate(row, Annotations.from_json({"items": []}))
    row = await snapshots.get("s-area")
    assert row is not None and row.area_cm2 is None
    assert await snapshots.fill_areas() == 0  # annotated without an outline: nothing to measure

"""The pilot's figures and session log, against a seeded pilot computed by hand.

500 consultations over three regions are written straight into the database from a seeded
RNG; the expected figures are worked out here in plain Python from the same seed rows (not
with :mod:`woundcare.pilot.figures`), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import (
    Assessment,
    AuditEvent,
    Consultation,
    ConsultationEvent,
    ConsultationStatus,
    Patient,
    QualitySample,
    Region,
    StaffRole,
    Snapshot,
)
from woundcare.refs import user_ref

PASSWORD = "pilot password 1"
REGIONS = {"pa": "Region A", "pb": "Region B", "pc": "=Region C"}
"""Region C's name starts like a spreadsheet formula: the CSV must defuse it."""
KM_PER_TRIP, HOURS_PER_TRIP = 120.0, 1.5
FIGURES_HEADER = [
    "region", "region_name", "consultations", "started", "wait_median_s", "wait_p90_s", "completed",
    "duration_median_s", "duration_p90_s", "reconnections", "reconnections_per_consultation",
    "bitrate_median_kbps", "bitrate_p90_kbps", "loss_median_pct", "loss_p90_pct", "rtt_median_ms",
    "rtt_p90_ms", "snapshots", "snapshots_per_consultation", "treated_at_home", "referred", "no_outcome",
    "travel_avoided_km", "travel_avoided_hours", "abandoned",
]
SESSIONS_HEADER = [
    "consultation", "region", "patient", "status", "created_at", "started_at", "ended_at", "wait_s",
    "duration_s", "reconnections", "snapshots", "outcome", "events",
]
MONTH_START = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass
class Seeded:
    consultation: dict[str, Any]
    region: str
    patient: str
    events: list[dict[str, Any]] = field(default_factory=list)
    snapshots: int = 0
    outcome: str | None = None
    has_assessment: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)


def percentile(values: list[float], p: int) -> float | None:
    """Nearest rank, put another way: the smallest value with at least p% of values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    for value in ordered:
        if sum(1 for v in ordered if v <= value) * 100 >= p * len(ordered):
            return value
    raise AssertionError("unreachable")


async def seed(server: RunningServer) -> list[Seeded]:
    rng = random.Random(20250301)
    seeded: list[Seeded] = []
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        region_ids: dict[str, int] = {}
        for code, name in REGIONS.items():
            region = Region(code=code, name=name)
            session.add(region)
            await session.flush()
            region_ids[code] = region.id
        patients = []
        for i in range(90):
            code = list(REGIONS)[i % 3]
            # Some pseudonyms start with "-" as token_urlsafe ones may: the CSV defuses those too.
            patients.append({"pseudonym": f"{'-' if i % 7 == 0 else ''}pseud{i:03d}", "region_id": region_ids[code],
                             "identity_sealed": b"sealed"})
        await session.execute(insert(Patient), patients)
        patient_rows = (await session.execute(select(Patient.id, Patient.pseudonym, Patient.region_id))).all()
        by_region: dict[int, list[tuple[int, str]]] = {}
        for pid, pseudonym, region_id in patient_rows:
            by_region.setdefault(region_id, []).append((pid, pseudonym))
        consultations, events, snapshots, assessments, samples = [], [], [], [], []
        weights = {"pa": 5, "pb": 3, "pc": 2}
        for i in range(500):
            code = rng.choices(list(weights), weights=list(weights.values()))[0]
            region_id = region_ids[code]
            patient_id, pseudonym = rng.choice(by_region[region_id])
            created = MONTH_START + timedelta(seconds=rng.randrange(0, 31 * 86400), milliseconds=rng.randrange(1000))
            started = ended = None
            status = ConsultationStatus.WAITING
            fate = rng.random()
            if fate > 0.1:
                started = created + timedelta(seconds=rng.randrange(5, 3600), milliseconds=rng.randrange(1000))
                status = ConsultationStatus.ACTIVE
                if fate > 0.2:
                    ended = started + timedelta(seconds=rng.randrange(60, 5400), milliseconds=rng.randrange(1000))
                    status = ConsultationStatus.ENDED
            if status is not ConsultationStatus.ENDED and rng.random() < 0.6:
                # Left with no nurse until the server marked it (some have an outcome all the same).
                status = ConsultationStatus.ABANDONED
                ended = (started or created) + timedelta(seconds=rng.randrange(600, 3600))
            cid = f"c{i:04d}x{rng.randrange(10**6):06d}"
            row = {"id": cid, "region_id": region_id, "patient_id": patient_id, "status": status,
                   "created_at": created, "started_at": started, "ended_at": ended}
            consultations.append(row)
            item = Seeded(row, code, pseudonym)
            seeded.append(item)

            def event(at: datetime, kind: str, role: str | None, item: Seeded = item, cid: str = cid) -> None:
                data = {"consultation_id": cid, "at": at, "kind": kind, "role": role,
                        "subject": user_ref(rng.randrange(100)), "participant": f"p{rng.randrange(1000)}",
                        "detail": None}
                events.append(data)
                item.events.append(data)

            event(created + timedelta(seconds=1), "joined", "nurse")
            if started is not None:
                event(started, "joined", "specialist")
                end = ended or started + timedelta(seconds=600)
                for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 4])):
                    at = started + (end - started) * rng.random()
                    event(at, "reconnecting", rng.choice(["nurse", "specialist"]))
                    event(at + timedelta(seconds=3), "rejoined", "nurse")
                if rng.random() < 0.3:
                    event(started + timedelta(seconds=30), "ice_restart", "nurse")
                for k in range(rng.choice([0, 1, 1, 2, 3])):
                    event(started + timedelta(seconds=40 + k), "snapshot_requested", "specialist")
                    snapshots.append({
                        "id": f"{cid}s{k}", "consultation_id": cid, "region_id": region_id, "patient_id": patient_id,
                        "taken_at": started + timedelta(seconds=41 + k), "taken_by": "u1", "media_type": "image/jpeg",
                        "width": 64, "height": 48, "size": 1000, "blob_key": f"blob-{cid}-{k}",
                        "thumb_sealed": b"thumb", "key_id": "k1",
                    })
                    item.snapshots += 1
                for _ in range(rng.randrange(0, 7)):
                    sample = {"consultation_id": cid, "region_id": region_id, "at": started + timedelta(seconds=5),
                              "role": rng.choice(["nurse", "specialist"]), "direction": rng.choice(["send", "receive"]),
                              "bitrate_kbps": None if rng.random() < 0.1 else round(rng.uniform(50, 2500), 2),
                              "loss_pct": None if rng.random() < 0.1 else round(rng.uniform(0, 12), 3),
                              "rtt_ms": None if rng.random() < 0.1 else float(rng.randrange(10, 900)),
                              "fps": 25.0, "width": 1280, "height": 720}
                    samples.append(sample)
                    item.samples.append(sample)
                if ended is not None:
                    event(ended, "left", "specialist")
                    if rng.random() < 0.85:
                        outcome = rng.choice(["treated_at_home", "treated_at_home", "referred", None])
                        assessments.append({"consultation_id": cid, "region_id": region_id, "content_sealed": b"x",
                                            "outcome": outcome, "author": "u1", "updated_at": ended})
                        item.outcome, item.has_assessment = outcome, True
        await session.execute(insert(Consultation), consultations)
        await session.execute(insert(ConsultationEvent), events)
        await session.execute(insert(Snapshot), snapshots)
        await session.execute(insert(Assessment), assessments)
        await session.execute(insert(QualitySample), samples)
    return seeded


OSLO = ZoneInfo("Europe/Oslo")


def in_period(items: list[Seeded], first: date | None, last: date | None) -> list[Seeded]:
    def inside(created: datetime) -> bool:
        day = created.astimezone(OSLO).date()
        return (first is None or day >= first) and (last is None or day <= last)

    return [s for s in items if inside(s.consultation["created_at"])]


def expected_figures(items: list[Seeded], code: str) -> dict[str, Any]:
    mine = [s for s in items if s.region == code]
    n = len(mine)
    waits = [(s.consultation["started_at"] - s.consultation["created_at"]).total_seconds()
             for s in mine if s.consultation["started_at"] is not None]
    # An abandoned consultation's end is when it was marked, not when its call ended.
    durations = [(s.consultation["ended_at"] - s.consultation["started_at"]).total_seconds()
                 for s in mine if s.consultation["status"] is ConsultationStatus.ENDED]
    reconnections = sum(1 for s in mine for e in s.events if e["kind"] == "reconnecting")
    received = [x for s in mine for x in s.samples if x["direction"] == "receive"]
    snapshots = sum(s.snapshots for s in mine)
    home = sum(1 for s in mine if s.outcome == "treated_at_home")
    referred = sum(1 for s in mine if s.outcome == "referred")
    abandoned = sum(1 for s in mine if s.consultation["status"] is ConsultationStatus.ABANDONED and s.outcome is None)

    def spread(values: list[float]) -> dict[str, Any]:
        return {"values": len(values), "median": percentile(values, 50), "p90": percentile(values, 90)}

    def measure(key: str) -> dict[str, Any]:
        return spread([x[key] for x in received if x[key] is not None])

    return {
        "region": code,
        "name": REGIONS[code],
        "consultations": n,
        "waitSeconds": spread(waits),
        "durationSeconds": spread(durations),
        "reconnections": {"count": reconnections, "perConsultation": reconnections / n if n else None},
        "quality": {"bitrateKbps": measure("bitrate_kbps"), "lossPct": measure("loss_pct"), "rttMs": measure("rtt_ms")},
        "snapshots": {"count": snapshots, "perConsultation": snapshots / n if n else None},
        "outcomes": {"treatedAtHome": home, "referred": referred, "abandoned": abandoned,
                     "none": n - home - referred - abandoned},
        "travelAvoided": {"km": home * KM_PER_TRIP, "hours": home * HOURS_PER_TRIP, "kmPerTrip": KM_PER_TRIP,
                          "hoursPerTrip": HOURS_PER_TRIP, "placeholder": home > 0, "estimatedTrips": home},
    }


def same(got: Any, want: Any, where: str = "") -> None:
    """Equal, with numbers to 3 decimals (the API rounds to milliseconds/thousandths)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for key in want:
            same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-3), (where, got, want)
    else:
        assert got == want, (where, got, want)


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    reader = csv.reader(io.StringIO(text, newline=""))
    header, *rows = list(reader)
    return header, [dict(zip(header, row, strict=True)) for row in rows]


def number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def check_csv_row(row: dict[str, str], want: dict[str, Any]) -> None:
    assert row["region"] == want["region"]
    assert row["region_name"] == ("'" + want["name"] if want["name"].startswith("=") else want["name"])
    flat = {
        "consultations": want["consultations"],
        "started": want["waitSeconds"]["values"],
        "wait_median_s": want["waitSeconds"]["median"],
        "wait_p90_s": want["waitSeconds"]["p90"],
        "completed": want["durationSeconds"]["values"],
        "duration_median_s": want["durationSeconds"]["median"],
        "duration_p90_s": want["durationSeconds"]["p90"],
        "reconnections": want["reconnections"]["count"],
        "reconnections_per_consultation": want["reconnections"]["perConsultation"],
        "bitrate_median_kbps": want["quality"]["bitrateKbps"]["median"],
        "bitrate_p90_kbps": want["quality"]["bitrateKbps"]["p90"],
        "loss_median_pct": want["quality"]["lossPct"]["median"],
        "loss_p90_pct": want["quality"]["lossPct"]["p90"],
        "rtt_median_ms": want["quality"]["rttMs"]["median"],
        "rtt_p90_ms": want["quality"]["rttMs"]["p90"],
        "snapshots": want["snapshots"]["count"],
        "snapshots_per_consultation": want["snapshots"]["perConsultation"],
        "treated_at_home": want["outcomes"]["treatedAtHome"],
        "referred": want["outcomes"]["referred"],
        "no_outcome": want["outcomes"]["none"],
        "travel_avoided_km": want["travelAvoided"]["km"],
        "travel_avoided_hours": want["travelAvoided"]["hours"],
        "abandoned": want["outcomes"]["abandoned"],
    }
    for key, value in flat.items():
        if value is None:
            assert row[key] == "", (key, row[key])
        else:
            assert number(row[key]) == pytest.approx(value, abs=1e-3), (key, row[key], value)


async def login(server: RunningServer, username: str) -> ApiClient:
    client = ApiClient(server.url)
    response = await client.login(username, PASSWORD)
    assert response.status == 200
    return client


@pytest.fixture
async def pilot(
    start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str
) -> tuple[RunningServer, list[Seeded]]:
    server = await start_server(database_url=migrated_db_url)
    items = await seed(server)
    await server.add_user("lead_a", PASSWORD, {"pa": StaffRole.PILOT_LEAD})
    await server.add_user("nurse_a", PASSWORD, {"pa": StaffRole.NURSE})
    await server.add_user("admin_all", PASSWORD, {code: StaffRole.ADMIN for code in REGIONS})
    return server, items


@pytest.mark.timeout(60)
async def test_figures_match_the_seeded_pilot(pilot: tuple[RunningServer, list[Seeded]]) -> None:
    server, items = pilot
    assert len(items) == 500 and {s.region for s in items} == set(REGIONS)
    admin = await login(server, "admin_all")
    try:
        # All time, all three regions.
        body = await admin.json("GET", "/api/pilot/figures")
        assert body["percentile"] == "nearest-rank" and body["from"] is None and body["to"] is None
        assert [r["region"] for r in body["regions"]] == sorted(REGIONS)
        for got in body["regions"]:
            same(got, expected_figures(items, got["region"]), got["region"])
        assert sum(r["consultations"] for r in body["regions"]) == 500
        assert all(r["outcomes"]["abandoned"] > 0 for r in body["regions"])

        # A period cuts on created_at by whole Norwegian days, both ends included.
        query = "from=2025-03-05&to=2025-03-20"
        period = in_period(items, date(2025, 3, 5), date(2025, 3, 20))
        assert 0 < len(period) < 500
        by_utc_days = [s for s in items if date(2025, 3, 5) <= s.consultation["created_at"].astimezone(UTC).date() <= date(2025, 3, 20)]
        assert {s.consultation["id"] for s in period} != {s.consultation["id"] for s in by_utc_days}  # the cut matters
        body = await admin.json("GET", f"/api/pilot/figures?{query}")
        assert (body["from"], body["to"]) == ("2025-03-05", "2025-03-20")
        for got in body["regions"]:
            same(got, expected_figures(period, got["region"]), got["region"])

        response = await admin.request("GET", f"/api/pilot/figures.csv?{query}")
        assert response.status == 200 and response.content_type == "text/csv"
        assert response.headers["Content-Disposition"] == 'attachment; filename="pilot-figures.csv"'
        header, rows = csv_rows(await response.text())
        assert header == FIGURES_HEADER
        assert [r["region"] for r in rows] == sorted(REGIONS)
        for row in rows:
            check_csv_row(row, expected_figures(period, row["region"]))

        # One region by name.
        body = await admin.json("GET", "/api/pilot/figures?region=pb&to=2025-03-10")
        assert [r["region"] for r in body["regions"]] == ["pb"]
        same(body["regions"][0], expected_figures(in_period(items, None, date(2025, 3, 10)), "pb"))

        # Bad queries.
        for bad in ("from=2025-3-1", "to=yesterday", "from=2025-03-10&to=2025-03-01"):
            await admin.json("GET", f"/api/pilot/figures?{bad}", expect=400)
    finally:
        await admin.close()


@pytest.mark.timeout(60)
async def test_sessions_list_the_logs_by_pseudonym(pilot: tuple[RunningServer, list[Seeded]]) -> None:
    server, items = pilot
    lead = await login(server, "lead_a")
    try:
        first, last = date(2025, 3, 10), date(2025, 3, 12)
        want = sorted((s for s in in_period(items, first, last) if s.region == "pa"),
                      key=lambda s: (s.consultation["created_at"], s.consultation["id"]))
        body = await lead.json("GET", "/api/pilot/sessions?from=2025-03-10&to=2025-03-12")
        got = body["sessions"]
        assert [g["id"] for g in got] == [s.consultation["id"] for s in want] and got
        for g, s in zip(got, want, strict=True):
            c = s.consultation
            assert g["region"] == "pa" and g["patient"] == s.patient
            assert g["status"] == c["status"].value and g["outcome"] == s.outcome
            assert datetime.fromisoformat(g["createdAt"]) == c["created_at"]
            assert g["snapshots"] == s.snapshots
            assert g["reconnections"] == sum(1 for e in s.events if e["kind"] == "reconnecting")
            if c["started_at"] is not None:
                assert g["waitSeconds"] == pytest.approx((c["started_at"] - c["created_at"]).total_seconds())
            else:
                assert g["waitSeconds"] is None
            if c["status"] is ConsultationStatus.ENDED:
                assert g["durationSeconds"] == pytest.approx((c["ended_at"] - c["started_at"]).total_seconds())
            else:  # an abandoned one's end is when it was marked
                assert g["durationSeconds"] is None
            log = sorted(s.events, key=lambda e: e["at"])
            assert [(datetime.fromisoformat(e["at"]), e["kind"], e["role"]) for e in g["events"]] == [
                (e["at"], e["kind"], e["role"]) for e in log
            ]
            assert all(set(e) == {"at", "kind", "role", "participant"} for e in g["events"]), "no subjects"
        assert "identity" not in str(body) and "sealed" not in str(body)

        response = await lead.request("GET", "/api/pilot/sessions.csv?from=2025-03-10&to=2025-03-12")
        assert response.status == 200
        assert response.headers["Content-Disposition"] == 'attachment; filename="pilot-sessions.csv"'
        header, rows = csv_rows(await response.text())
        assert header == SESSIONS_HEADER
        assert [r["consultation"] for r in rows] == [s.consultation["id"] for s in want]
        for row, s in zip(rows, want, strict=True):
            assert row["patient"] == ("'" + s.patient if s.patient.startswith("-") else s.patient)
            assert int(row["snapshots"]) == s.snapshots
            assert row["events"].count(" reconnecting ") == sum(1 for e in s.events if e["kind"] == "reconnecting")
    finally:
        await lead.close()


@pytest.mark.timeout(60)
async def test_a_lead_sees_only_their_region_and_a_nurse_nothing(pilot: tuple[RunningServer, list[Seeded]]) -> None:
    server, items = pilot
    lead = await login(server, "lead_a")
    nurse = await login(server, "nurse_a")
    try:
        body = await lead.json("GET", "/api/pilot/figures")
        assert [r["region"] for r in body["regions"]] == ["pa"]
        same(body["regions"][0], expected_figures(items, "pa"))
        _, rows = csv_rows(await (await lead.request("GET", "/api/pilot/figures.csv")).text())
        assert [r["region"] for r in rows] == ["pa"]
        sessions = (await lead.json("GET", "/api/pilot/sessions"))["sessions"]
        assert {s["region"] for s in sessions} == {"pa"}
        assert len(sessions) == sum(1 for s in items if s.region == "pa")
        _, rows = csv_rows(await (await lead.request("GET", "/api/pilot/sessions.csv")).text())
        assert {r["region"] for r in rows} == {"pa"}

        for path in ("figures", "figures.csv", "sessions", "sessions.csv"):
            for region in ("pb", "pc", "nowhere"):
                await lead.json("GET", f"/api/pilot/{path}?region={region}", expect=403)
            await nurse.json("GET", f"/api/pilot/{path}", expect=403)
            await nurse.json("GET", f"/api/pilot/{path}?region=pa", expect=403)
        anonymous = ApiClient(server.url)
        try:
            await anonymous.json("GET", "/api/pilot/figures", expect=401)
        finally:
            await anonymous.close()
    finally:
        await lead.close()
        await nurse.close()

    async with server.app[SERVICES].database.sessions() as session:
        audited = dict((await session.execute(
            select(AuditEvent.outcome, func.count()).where(AuditEvent.action == "pilot.figures")
            .group_by(AuditEvent.outcome)
        )).all())
    assert audited.get("ok", 0) == 4, audited
    assert audited.get("denied", 0) >= 4 * 5, audited
    # A refused foreign region is audited against that region.
    async with server.app[SERVICES].database.sessions() as session:
        foreign = await session.scalar(select(Region.id).where(Region.code == "pb"))
        denied_there = await session.scalar(
            select(func.count()).where(AuditEvent.action == "pilot.figures", AuditEvent.region_id == foreign)
        )
    assert denied_there == 4

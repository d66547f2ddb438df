"""Per-region figures of the pilot and the session log behind them.

Reads plain, non-identifying columns only (times, event kinds and roles, outcomes,
call-quality numbers, counts); nothing sealed is decrypted, and patients appear by
pseudonym only.

Definitions:

- A consultation belongs to the period when it was *created* in it: ``from`` and ``to`` are
  whole days in the pilot's time zone (``pilot_timezone``, Europe/Oslo), both included, so
  a visit at 00:30 Norwegian time counts on that day, not the one before.
- Waiting time: ``started_at - created_at`` (the first viewer joined), over consultations
  that started. Duration: ``ended_at - started_at`` over consultations that started and ended
  (not abandoned ones: their end is when they were marked).
- Percentiles are **nearest-rank**: the p-th percentile of n sorted values is the value at
  rank ``ceil(p / 100 * n)`` (1-based), so it is always one of the measured values; the
  median is the 50th percentile by the same rule (the lower middle value for even n).
- Call quality: samples with direction ``receive`` (what a participant actually got), each
  measure over its non-empty values. For loss and RTT the p90 is the bad tail; for bitrate
  it is the good one.
- Outcomes: treated at home (with ``healed``: the wound closed, follow-up ended at home) and
  referred by the assessment; *abandoned* are the
  consultations without one that were left with no nurse until they were marked abandoned
  (``ConsultationStatus.ABANDONED``); *no outcome* are the rest.
- Travel avoided: for each consultation treated at home (or healed), the round trip from the patient's
  municipality as the lead entered it (``travel_distances``), else :data:`DEFAULT_TRAVEL`.
- The figures above are of video calls. E-consults are counted apart
  (:func:`econsult_figures`): sent, answered, by urgency, and the time to answer
  (``signed_at`` of the answer ``- created_at``) as median and p90 in hours over those
  answered; one sent in the period counts there whenever it was answered.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from ..db.models import ConsultationStatus, Outcome, Urgency
from ..records.accounts import Accounts
from ..records.pilot import AT_HOME, Pilot, Window

RECONNECTING = "reconnecting"
"""The session-log event kind counted as a reconnection (``signaling.sink.EventKind``)."""


@dataclass(frozen=True, slots=True)
class Travel:
    """The round trip a nurse or patient would have made to the specialist."""

    km: float
    """Kilometres for the round trip."""
    hours: float
    """Hours for the round trip."""


DEFAULT_TRAVEL = Travel(km=2 * 60.0, hours=1.5)
"""An estimate (2 x 60 km, 1.5 hours per round trip) for patients whose municipality has no
distance in the lead's table; the figures say how many trips were estimated."""


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank ``percent``-th percentile of ``values``; None for no values."""
    if not 0 < percent <= 100:
        raise ValueError(f"'percent' must be in (0, 100] (got {percent})")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _mean(total: int, count: int) -> float | None:
    return round(total / count, 3) if count else None


@dataclass(frozen=True, slots=True)
class Period:
    """Whole days in ``zone``, both ends included; an open end is unbounded."""

    first: date | None = None
    last: date | None = None
    zone: tzinfo = UTC

    def __post_init__(self) -> None:
        if self.first is not None and self.last is not None and self.first > self.last:
            raise ValueError("'from' must not be after 'to'")

    @property
    def start(self) -> datetime | None:
        return None if self.first is None else datetime.combine(self.first, time(), self.zone)

    @property
    def end(self) -> datetime | None:
        """Exclusive: midnight after the last day."""
        return None if self.last is None else datetime.combine(self.last + timedelta(days=1), time(), self.zone)

    def json(self) -> dict[str, str | None]:
        return {
            "from": self.first.isoformat() if self.first else None,
            "to": self.last.isoformat() if self.last else None,
        }

    def window(self, region_ids: Sequence[int]) -> Window:
        """The consultations of ``region_ids`` created in this period."""
        return Window(region_ids, self.start, self.end)


@dataclass(frozen=True, slots=True)
class RegionRef:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and p90 (nearest rank) of a measure, with how many values they came from."""

    values: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(len(values), _round(nearest_rank(values, 50)), _round(nearest_rank(values, 90)))

    def json(self) -> dict[str, object]:
        return {"values": self.values, "median": self.median, "p90": self.p90}


@dataclass(slots=True)
class RegionFigures:
    region: RegionRef
    consultations: int = 0
    wait_seconds: Spread = field(default_factory=lambda: Spread.of([]))
    duration_seconds: Spread = field(default_factory=lambda: Spread.of([]))
    reconnections: int = 0
    bitrate_kbps: Spread = field(default_factory=lambda: Spread.of([]))
    loss_pct: Spread = field(default_factory=lambda: Spread.of([]))
    rtt_ms: Spread = field(default_factory=lambda: Spread.of([]))
    snapshots: int = 0
    treated_at_home: int = 0
    referred: int = 0
    abandoned: int = 0
    """Abandoned without an outcome."""
    travel_km: float = 0.0
    travel_hours: float = 0.0
    travel_estimated: int = 0
    """Consultations treated at home whose municipality has no distance entered."""

    @property
    def no_outcome(self) -> int:
        return self.consultations - self.treated_at_home - self.referred - self.abandoned

    @property
    def travel(self) -> Travel:
        return DEFAULT_TRAVEL

    def json(self) -> dict[str, object]:
        return {
            "region": self.region.code,
            "name": self.region.name,
            "consultations": self.consultations,
            "waitSeconds": self.wait_seconds.json(),
            "durationSeconds": self.duration_seconds.json(),
            "reconnections": {
                "count": self.reconnections,
                "perConsultation": _mean(self.reconnections, self.consultations),
            },
            "quality": {
                "bitrateKbps": self.bitrate_kbps.json(),
                "lossPct": self.loss_pct.json(),
                "rttMs": self.rtt_ms.json(),
            },
            "snapshots": {"count": self.snapshots, "perConsultation": _mean(self.snapshots, self.consultations)},
            "outcomes": {
                "treatedAtHome": self.treated_at_home,
                "referred": self.referred,
                "abandoned": self.abandoned,
                "none": self.no_outcome,
            },
            "travelAvoided": {
                "km": self.travel_km,
                "hours": self.travel_hours,
                "kmPerTrip": self.travel.km,
                "hoursPerTrip": self.travel.hours,
                "placeholder": self.travel_estimated > 0,
                "estimatedTrips": self.travel_estimated,
            },
        }

    def row(self) -> list[object]:
        """The values for :data:`FIGURES_COLUMNS`, in that order."""
        return [
            self.region.code,
            self.region.name,
            self.consultations,
            self.wait_seconds.values,
            self.wait_seconds.median,
            self.wait_seconds.p90,
            self.duration_seconds.values,
            self.duration_seconds.median,
            self.duration_seconds.p90,
            self.reconnections,
            _mean(self.reconnections, self.consultations),
            self.bitrate_kbps.median,
            self.bitrate_kbps.p90,
            self.loss_pct.median,
            self.loss_pct.p90,
            self.rtt_ms.median,
            self.rtt_ms.p90,
            self.snapshots,
            _mean(self.snapshots, self.consultations),
            self.treated_at_home,
            self.referred,
            self.no_outcome,
            self.travel_km,
            self.travel_hours,
            self.abandoned,
        ]


FIGURES_COLUMNS: tuple[str, ...] = (
    "region",
    "region_name",
    "consultations",
    "started",
    "wait_median_s",
    "wait_p90_s",
    "completed",
    "duration_median_s",
    "duration_p90_s",
    "reconnections",
    "reconnections_per_consultation",
    "bitrate_median_kbps",
    "bitrate_p90_kbps",
    "loss_median_pct",
    "loss_p90_pct",
    "rtt_median_ms",
    "rtt_p90_ms",
    "snapshots",
    "snapshots_per_consultation",
    "treated_at_home",
    "referred",
    "no_outcome",
    "travel_avoided_km",
    "travel_avoided_hours",
    "abandoned",
)
"""The CSV export's columns, in their fixed order: append new ones at the end."""


async def compute_figures(pilot: Pilot, regions: Sequence[RegionRef], period: Period) -> list[RegionFigures]:
    """One :class:`RegionFigures` per region in ``regions`` (in that order), for ``period``."""
    figures = {r.id: RegionFigures(r) for r in regions}
    if not figures:
        return []
    rows = await pilot.figure_rows(period.window(list(figures)), RECONNECTING)

    waits: dict[int, list[float]] = defaultdict(list)
    durations: dict[int, list[float]] = defaultdict(list)
    for region_id, status, created, started, ended in rows.consultations:
        figures[region_id].consultations += 1
        if started is not None:
            waits[region_id].append((started - created).total_seconds())
            # An abandoned consultation's end is when it was marked, not when its call ended.
            if ended is not None and status is ConsultationStatus.ENDED:
                durations[region_id].append((ended - started).total_seconds())
    for region_id, count in rows.events:
        figures[region_id].reconnections = count
    for region_id, count in rows.snapshots:
        figures[region_id].snapshots = count
    for region_id, outcome, count in rows.outcomes:
        if outcome in AT_HOME:
            figures[region_id].treated_at_home += count
        elif outcome is Outcome.REFERRED:
            figures[region_id].referred = count
    for region_id, count in rows.abandoned:
        figures[region_id].abandoned = count

    # Each consultation treated at home saved its patient's round trip: from the lead's
    # table for the patient's municipality, else the default estimate.
    for region_id, km, hours in rows.home_trips:
        found = figures[region_id]
        if km is None or hours is None:
            found.travel_estimated += 1
            km, hours = found.travel.km, found.travel.hours
        found.travel_km = round(found.travel_km + km, 3)
        found.travel_hours = round(found.travel_hours + hours, 3)

    bitrate: dict[int, list[float]] = defaultdict(list)
    loss: dict[int, list[float]] = defaultdict(list)
    rtt: dict[int, list[float]] = defaultdict(list)
    for region_id, kbps, loss_pct, rtt_ms in rows.received:
        if kbps is not None:
            bitrate[region_id].append(kbps)
        if loss_pct is not None:
            loss[region_id].append(loss_pct)
        if rtt_ms is not None:
            rtt[region_id].append(rtt_ms)

    for region_id, found in figures.items():
        found.wait_seconds = Spread.of(waits[region_id])
        found.duration_seconds = Spread.of(durations[region_id])
        found.bitrate_kbps = Spread.of(bitrate[region_id])
        found.loss_pct = Spread.of(loss[region_id])
        found.rtt_ms = Spread.of(rtt[region_id])
    return [figures[r.id] for r in regions]


SESSIONS_COLUMNS: tuple[str, ...] = (
    "consultation",
    "region",
    "patient",
    "status",
    "created_at",
    "started_at",
    "ended_at",
    "wait_s",
    "duration_s",
    "reconnections",
    "snapshots",
    "outcome",
    "events",
)
"""The sessions CSV's columns; ``events`` is ``<at> <kind> <role>`` entries joined by ``; ``."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    at: datetime
    kind: str
    role: str | None
    participant: str | None

    def json(self) -> dict[str, object]:
        return {"at": self.at.isoformat(), "kind": self.kind, "role": self.role, "participant": self.participant}

    def text(self) -> str:
        return f"{self.at.isoformat()} {self.kind} {self.role or '-'}"


@dataclass(slots=True)
class SessionSummary:
    """One consultation's session log, by pseudonym and role only: who joined, dropped,
    rejoined and left, and when. Event subjects (user ids, invitation names) are left out."""

    id: str
    region: str
    patient: str
    status: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    snapshots: int = 0
    events: list[SessionEvent] = field(default_factory=list)

    @property
    def wait_seconds(self) -> float | None:
        return None if self.started_at is None else (self.started_at - self.created_at).total_seconds()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None or self.status == ConsultationStatus.ABANDONED.value:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def reconnections(self) -> int:
        return sum(1 for e in self.events if e.kind == RECONNECTING)

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "region": self.region,
            "patient": self.patient,
            "status": self.status,
            "createdAt": self.created_at.isoformat(),
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            "waitSeconds": self.wait_seconds,
            "durationSeconds": self.duration_seconds,
            "reconnections": self.reconnections,
            "snapshots": self.snapshots,
            "outcome": self.outcome,
            "events": [e.json() for e in self.events],
        }

    def row(self) -> list[object]:
        """The values for :data:`SESSIONS_COLUMNS`, in that order."""
        return [
            self.id,
            self.region,
            self.patient,
            self.status,
            self.created_at.isoformat(),
            self.started_at.isoformat() if self.started_at else None,
            self.ended_at.isoformat() if self.ended_at else None,
            self.wait_seconds,
            self.duration_seconds,
            self.reconnections,
            self.snapshots,
            self.outcome,
            "; ".join(e.text() for e in self.events),
        ]


async def list_sessions(pilot: Pilot, regions: Sequence[RegionRef], period: Period) -> list[SessionSummary]:
    """The consultations of ``regions`` created in ``period``, oldest first, with their logs."""
    if not regions:
        return []
    codes = {r.id: r.code for r in regions}
    rows = await pilot.session_rows(period.window(list(codes)))
    found: dict[str, SessionSummary] = {}
    for consultation_id, region_id, pseudonym, status, created, started, ended, outcome in rows.consultations:
        found[consultation_id] = SessionSummary(
            id=consultation_id,
            region=codes[region_id],
            patient=pseudonym,
            status=status.value,
            created_at=created,
            started_at=started,
            ended_at=ended,
            outcome=outcome.value if outcome is not None else None,
        )
    for consultation_id, at, kind, role, participant in rows.events:
        found[consultation_id].events.append(SessionEvent(at, kind, role, participant))
    for consultation_id, count in rows.snapshots:
        found[consultation_id].snapshots = count
    return list(found.values())


async def visible_regions(accounts: Accounts, region_ids: Sequence[int]) -> list[RegionRef]:
    """The regions among ``region_ids`` that are not shredded, by code."""
    return [RegionRef(r.id, r.code, r.name) for r in await accounts.regions(region_ids, shredded=False)]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """A CSV cell: empty for None; text that a spreadsheet would run as a formula is
    prefixed with ``'`` (OWASP CSV injection advice) - region names are typed by people."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """RFC 4180: a header row, CRLF line ends, fields quoted only when they need it."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} values for {len(columns)} columns")
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


# --- e-consults, counted apart from video calls (issue 18) -------------------------------------


@dataclass(frozen=True, slots=True)
class EconsultFigures:
    region: RegionRef
    sent: int
    answered: int
    by_urgency: dict[str, int]
    """Sent, per urgency (every urgency named, zero included)."""
    answer_hours: Spread
    """From sent to the signed answer, over those answered."""

    def json(self) -> dict[str, object]:
        return {
            "region": self.region.code,
            "regionName": self.region.name,
            "sent": self.sent,
            "answered": self.answered,
            "open": self.sent - self.answered,
            "byUrgency": self.by_urgency,
            "answerHours": self.answer_hours.json(),
        }


async def econsult_figures(pilot: Pilot, regions: Sequence[RegionRef], period: Period) -> list[EconsultFigures]:
    """One :class:`EconsultFigures` per region in ``regions`` (in that order), for ``period``."""
    if not regions:
        return []
    sent: dict[int, int] = defaultdict(int)
    urgencies: dict[int, dict[str, int]] = {r.id: {u.value: 0 for u in Urgency} for r in regions}
    hours: dict[int, list[float]] = defaultdict(list)
    for region_id, urgency, created, answered in await pilot.econsult_rows(period.window([r.id for r in regions])):
        sent[region_id] += 1
        if urgency is not None:
            urgencies[region_id][urgency.value] += 1
        if answered is not None:
            hours[region_id].append((answered - created).total_seconds() / 3600)
    return [
        EconsultFigures(r, sent[r.id], len(hours[r.id]), urgencies[r.id], Spread.of(hours[r.id])) for r in regions
    ]

"""Evidence of effect: whether wounds heal, per region and period.

Reads plain columns only (the measured area of each snapshot, signed outcomes, times); nothing
sealed is opened, and wounds appear by their patient's pseudonym only.

Definitions (docs/pilot-figures.md says the same for readers of the exports):

- **Wound.** The record has no wound id: each patient is one wound episode. A wound belongs to
  the region of its patient and to the period in which its *first consultation* was created
  (whole days in the pilot's time zone, as for the other figures). Its measurements and
  outcomes count whenever they fell, also after the period: the period picks a cohort.
- **Area over time.** Each snapshot with a measured outline gives (taken at, area cm2).
- **Healed.** The first signed assessment with outcome ``healed``; its consultation's creation
  is the healing time. An outline must have an area, so no measurement says 0: a healing
  counts as a measurement of 0 cm2 at that time.
- **Area reduction at 4 weeks.** Baseline: the wound's first measurement (day 0). Follow-up:
  among the measurements (and the healing) on days 21 to 35 after the baseline, the one
  closest to day 28, the earlier of two equally close; a wound healed before day 21 has
  0 cm2 at 4 weeks. Reduction = 100 x (baseline - follow-up) / baseline, negative when the
  wound grew. Wounds without a baseline or without a follow-up in the window are left out,
  and the figures say from how many wounds they come. A reduction of at least 40 % at
  4 weeks is counted apart: it predicts healing of venous leg ulcers.
- **Time to healing.** Days from the first consultation to the healing, over healed wounds;
  median and p90 by nearest rank. Wounds not healed (yet) are counted as open.
- **Treated at home vs referred.** From signed outcomes: a wound is *referred* if any of its
  assessments referred it, else *treated at home* if any said treated at home or healed, else
  it has no outcome. The share at home is home / (home + referred).
- **Re-referral.** A wound is re-referred when an assessment referred it within
  :data:`RE_REFERRAL_DAYS` days (by consultation creation, after, not at the same moment)
  of an assessment that kept it at home (treated at home or healed); the share is over the
  wounds ever kept at home.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..db.models import Outcome
from ..records.pilot import AT_HOME, Pilot
from .figures import Period, RegionRef, Spread

DAY_SECONDS = 86_400.0
WEEK4_DAY = 28.0
WEEK4_WINDOW = (21.0, 35.0)
"""Days after the baseline, both included, in which the 4-week follow-up is looked for."""
PREDICTIVE_REDUCTION_PCT = 40.0
RE_REFERRAL_DAYS = 30


def _days(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / DAY_SECONDS


@dataclass(frozen=True, slots=True)
class AreaPoint:
    at: datetime
    area_cm2: float

    def json(self) -> dict[str, object]:
        return {"at": self.at.isoformat(), "areaCm2": self.area_cm2}


@dataclass(slots=True)
class WoundCourse:
    """One wound (patient) and what the effect figures take from it."""

    patient: str
    region: str
    first_at: datetime
    areas: list[AreaPoint] = field(default_factory=list)
    outcomes: list[tuple[datetime, Outcome]] = field(default_factory=list)

    @property
    def healed_at(self) -> datetime | None:
        return next((at for at, outcome in self.outcomes if outcome is Outcome.HEALED), None)

    @property
    def days_to_healing(self) -> float | None:
        healed = self.healed_at
        return None if healed is None else round(_days(self.first_at, healed), 3)

    @property
    def baseline(self) -> AreaPoint | None:
        return self.areas[0] if self.areas else None

    @property
    def week4(self) -> AreaPoint | None:
        """The follow-up measurement closest to day 28 (see the module's definitions)."""
        baseline = self.baseline
        if baseline is None:
            return None
        points = list(self.areas)
        healed = self.healed_at
        if healed is not None and healed >= baseline.at:
            if _days(baseline.at, healed) < WEEK4_WINDOW[0]:
                return AreaPoint(healed, 0.0)
            points.append(AreaPoint(healed, 0.0))
        low, high = WEEK4_WINDOW
        inside = [p for p in points if low <= _days(baseline.at, p.at) <= high]
        if not inside:
            return None
        return min(inside, key=lambda p: (abs(_days(baseline.at, p.at) - WEEK4_DAY), p.at))

    @property
    def reduction_pct(self) -> float | None:
        baseline, week4 = self.baseline, self.week4
        if baseline is None or week4 is None or baseline.area_cm2 <= 0:
            return None
        return round(100 * (baseline.area_cm2 - week4.area_cm2) / baseline.area_cm2, 3)

    @property
    def disposition(self) -> Outcome | None:
        """Referred if ever referred, else treated at home if ever kept at home."""
        kinds = {outcome for _, outcome in self.outcomes}
        if Outcome.REFERRED in kinds:
            return Outcome.REFERRED
        return Outcome.TREATED_AT_HOME if kinds & AT_HOME else None

    @property
    def kept_at_home(self) -> bool:
        return any(outcome in AT_HOME for _, outcome in self.outcomes)

    @property
    def re_referred(self) -> bool:
        home = [at for at, outcome in self.outcomes if outcome in AT_HOME]
        return any(
            0 < _days(kept, at) <= RE_REFERRAL_DAYS
            for at, outcome in self.outcomes
            if outcome is Outcome.REFERRED
            for kept in home
        )

    def json(self) -> dict[str, object]:
        baseline, week4, healed = self.baseline, self.week4, self.healed_at
        disposition = self.disposition
        return {
            "patient": self.patient,
            "region": self.region,
            "firstAt": self.first_at.isoformat(),
            "areas": [p.json() for p in self.areas],
            "baselineCm2": baseline.area_cm2 if baseline else None,
            "week4Cm2": week4.area_cm2 if week4 else None,
            "week4Day": round(_days(baseline.at, week4.at), 3) if baseline and week4 else None,
            "reductionPct": self.reduction_pct,
            "healedAt": healed.isoformat() if healed else None,
            "daysToHealing": self.days_to_healing,
            "outcome": disposition.value if disposition else None,
            "reReferred": self.re_referred,
        }

    def row(self) -> list[object]:
        """The values for :data:`WOUNDS_COLUMNS`, in that order."""
        found = self.json()
        return [
            self.patient,
            self.region,
            found["firstAt"],
            found["baselineCm2"],
            found["week4Day"],
            found["week4Cm2"],
            found["reductionPct"],
            found["healedAt"],
            found["daysToHealing"],
            found["outcome"],
            self.re_referred,
            "; ".join(f"{p.at.isoformat()} {p.area_cm2!r}" for p in self.areas),
        ]


WOUNDS_COLUMNS: tuple[str, ...] = (
    "patient",
    "region",
    "first_consultation_at",
    "baseline_area_cm2",
    "week4_day",
    "week4_area_cm2",
    "area_reduction_4w_pct",
    "healed_at",
    "days_to_healing",
    "outcome",
    "re_referred",
    "areas",
)
"""The wounds CSV's columns; ``areas`` is ``<taken at> <cm2>`` entries joined by ``; ``."""


@dataclass(slots=True)
class EffectFigures:
    region: RegionRef
    wounds: list[WoundCourse] = field(default_factory=list)

    @property
    def reductions(self) -> list[float]:
        return [r for r in (w.reduction_pct for w in self.wounds) if r is not None]

    @property
    def healing_days(self) -> list[float]:
        return [d for d in (w.days_to_healing for w in self.wounds) if d is not None]

    def _count(self, outcome: Outcome | None) -> int:
        return sum(1 for w in self.wounds if w.disposition is outcome)

    def values(self) -> dict[str, int | float | None]:
        """Every figure by its CSV column name (:data:`EFFECT_COLUMNS` after region and name)."""
        reductions, healing = Spread.of(self.reductions), Spread.of(self.healing_days)
        home, referred = self._count(Outcome.TREATED_AT_HOME), self._count(Outcome.REFERRED)
        kept = sum(1 for w in self.wounds if w.kept_at_home)
        re_referred = sum(1 for w in self.wounds if w.re_referred)
        return {
            "wounds": len(self.wounds),
            "measured": sum(1 for w in self.wounds if w.areas),
            "area_reduction_4w_wounds": reductions.values,
            "area_reduction_4w_median_pct": reductions.median,
            "area_reduction_4w_at_least_40": sum(1 for r in self.reductions if r >= PREDICTIVE_REDUCTION_PCT),
            "healed": healing.values,
            "open": len(self.wounds) - healing.values,
            "days_to_healing_median": healing.median,
            "days_to_healing_p90": healing.p90,
            "treated_at_home": home,
            "referred": referred,
            "no_outcome": len(self.wounds) - home - referred,
            "share_at_home": _share(home, home + referred),
            "re_referred": re_referred,
            "kept_at_home": kept,
            "re_referral_share": _share(re_referred, kept),
        }

    def json(self) -> dict[str, object]:
        v = self.values()
        return {
            "region": self.region.code,
            "name": self.region.name,
            "wounds": v["wounds"],
            "measured": v["measured"],
            "areaReduction4w": {
                "values": v["area_reduction_4w_wounds"],
                "medianPct": v["area_reduction_4w_median_pct"],
                "atLeast40": v["area_reduction_4w_at_least_40"],
            },
            "healing": {
                "healed": v["healed"],
                "open": v["open"],
                "medianDays": v["days_to_healing_median"],
                "p90Days": v["days_to_healing_p90"],
            },
            "outcomes": {
                "treatedAtHome": v["treated_at_home"],
                "referred": v["referred"],
                "none": v["no_outcome"],
                "shareAtHome": v["share_at_home"],
            },
            "reReferrals": {
                "count": v["re_referred"],
                "ofKeptAtHome": v["kept_at_home"],
                "share": v["re_referral_share"],
                "withinDays": RE_REFERRAL_DAYS,
            },
        }

    def row(self) -> list[object]:
        """The values for :data:`EFFECT_COLUMNS`, in that order."""
        v = self.values()
        return [self.region.code, self.region.name, *(v[c] for c in EFFECT_COLUMNS[2:])]


EFFECT_COLUMNS: tuple[str, ...] = (
    "region",
    "region_name",
    "wounds",
    "measured",
    "area_reduction_4w_wounds",
    "area_reduction_4w_median_pct",
    "area_reduction_4w_at_least_40",
    "healed",
    "open",
    "days_to_healing_median",
    "days_to_healing_p90",
    "treated_at_home",
    "referred",
    "no_outcome",
    "share_at_home",
    "re_referred",
    "kept_at_home",
    "re_referral_share",
)
"""The effect CSV's columns, in their fixed order: append new ones at the end."""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def compute_effect(pilot: Pilot, regions: Sequence[RegionRef], period: Period) -> list[EffectFigures]:
    """One :class:`EffectFigures` per region in ``regions`` (in that order), for ``period``."""
    figures = {r.id: EffectFigures(r) for r in regions}
    if not figures:
        return []
    rows = await pilot.effect_rows(period.window(list(figures)))
    courses: dict[int, WoundCourse] = {}
    for patient_id, pseudonym, region_id, first_at in rows.wounds:
        found = figures.get(region_id)
        if found is None:
            continue  # a patient of another region seen in one of these regions' consultations
        course = WoundCourse(pseudonym, found.region.code, first_at)
        courses[patient_id] = course
        found.wounds.append(course)
    areas: dict[int, list[AreaPoint]] = defaultdict(list)
    for patient_id, taken_at, area in rows.areas:
        if area is not None:
            areas[patient_id].append(AreaPoint(taken_at, area))
    for patient_id, at, outcome in rows.outcomes:
        if patient_id in courses and outcome is not None:
            courses[patient_id].outcomes.append((at, outcome))
    for patient_id, points in areas.items():
        if patient_id in courses:
            courses[patient_id].areas = points
    return [figures[r.id] for r in regions]

"""The effect definitions at their edges, one wound at a time (no database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from woundcare.db.models import Outcome
from woundcare.pilot.effect import AreaPoint, WoundCourse

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def course(
    areas: Sequence[tuple[float, float]], outcomes: Sequence[tuple[float, Outcome]] = (), first: float = 0
) -> WoundCourse:
    return WoundCourse(
        "p", "r", day(first), [AreaPoint(day(d), a) for d, a in areas], [(day(d), o) for d, o in outcomes]
    )


@pytest.mark.parametrize(
    ("areas", "outcomes", "week4", "reduction"),
    [
        # The measurement closest to day 28 in 21..35, both ends included.
        ([(0, 10.0), (21, 8.0), (27, 6.0), (35, 5.0)], [], 6.0, 40.0),
        ([(0, 10.0), (21, 8.0)], [], 8.0, 20.0),
        ([(0, 10.0), (35, 4.0)], [], 4.0, 60.0),
        ([(0, 10.0), (20.99, 8.0), (35.01, 4.0)], [], None, None),
        # Two equally close: the earlier.
        ([(0, 10.0), (26, 7.0), (30, 5.0)], [], 7.0, 30.0),
        # A wound that grew has a negative reduction.
        ([(0, 10.0), (28, 12.5)], [], 12.5, -25.0),
        # Healed inside the window: a 0 cm2 measurement, taken if closest.
        ([(0, 10.0), (22, 3.0)], [(27, Outcome.HEALED)], 0.0, 100.0),
        ([(0, 10.0), (28, 3.0)], [(33, Outcome.HEALED)], 3.0, 70.0),
        # Healed before day 21: 0 cm2 at 4 weeks.
        ([(0, 10.0), (7, 5.0)], [(14, Outcome.HEALED)], 0.0, 100.0),
        # Healed before the first measurement: not taken as this course's 0.
        ([(10, 10.0), (38, 6.0)], [(5, Outcome.HEALED)], 6.0, 40.0),
        # No baseline, no reduction; the baseline is the first measurement, not the first visit.
        ([], [(30, Outcome.HEALED)], None, None),
        ([(3, 8.0), (31, 4.0)], [], 4.0, 50.0),
    ],
)
def test_area_reduction_at_4_weeks(
    areas: list[tuple[float, float]], outcomes: list[tuple[float, Outcome]], week4: float | None, reduction: float | None
) -> None:
    found = course(areas, outcomes)
    assert (found.week4.area_cm2 if found.week4 else None) == week4
    assert found.reduction_pct == reduction


def test_time_to_healing_counts_from_the_first_consultation_and_the_first_healing() -> None:
    found = course([(2, 5.0)], [(10, Outcome.TREATED_AT_HOME), (40.5, Outcome.HEALED), (60, Outcome.HEALED)], first=0)
    assert found.days_to_healing == 40.5
    assert course([(0, 5.0)], [(10, Outcome.TREATED_AT_HOME)]).days_to_healing is None


@pytest.mark.parametrize(
    ("outcomes", "disposition", "kept", "re_referred"),
    [
        ([], None, False, False),
        ([(0, Outcome.TREATED_AT_HOME)], Outcome.TREATED_AT_HOME, True, False),
        ([(0, Outcome.HEALED)], Outcome.TREATED_AT_HOME, True, False),
        ([(0, Outcome.REFERRED)], Outcome.REFERRED, False, False),
        # Referred within 30 days after a visit that kept it at home; the 30th day included.
        ([(0, Outcome.TREATED_AT_HOME), (30, Outcome.REFERRED)], Outcome.REFERRED, True, True),
        ([(0, Outcome.TREATED_AT_HOME), (30.01, Outcome.REFERRED)], Outcome.REFERRED, True, False),
        ([(0, Outcome.HEALED), (12, Outcome.REFERRED)], Outcome.REFERRED, True, True),
        # Referred first, then kept at home: no re-referral.
        ([(0, Outcome.REFERRED), (5, Outcome.TREATED_AT_HOME)], Outcome.REFERRED, True, False),
        # The same moment is not "after".
        ([(3, Outcome.TREATED_AT_HOME), (3, Outcome.REFERRED)], Outcome.REFERRED, True, False),
    ],
)
def test_home_referred_and_re_referral(
    outcomes: list[tuple[float, Outcome]], disposition: Outcome | None, kept: bool, re_referred: bool
) -> None:
    found = course([], outcomes)
    assert (found.disposition, found.kept_at_home, found.re_referred) == (disposition, kept, re_referred)

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from fractions import Fraction

import pytest

from woundcare.records.measurement import (
    MAX_ITEMS,
    METHOD,
    Annotations,
    Arrow,
    Measurement,
    Outline,
    OutlineShape,
    Point,
    Reference,
    Text,
    measure,
)

try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # not in the project's test extras yet: the seeded loops below still run
    HAVE_HYPOTHESIS = False
else:
    HAVE_HYPOTHESIS = True

PX_PER_CM = 50
REF = Reference(Point(10, 10), Point(110, 10), 2.0)  # 100 px = 2 cm
ONE_TO_ONE = Reference(Point(0, 0), Point(100, 0), 100.0)  # 1 cm per px: results read in px
CENTRE = (1000.0, 1000.0)


XY = Sequence[tuple[float, float]]


def outline(xy: XY) -> Outline:
    return Outline(tuple(Point(x, y) for x, y in xy))


def rectangle_cm(w: float, h: float, at: tuple[float, float] = (100, 100)) -> list[tuple[float, float]]:
    x, y = at
    s = PX_PER_CM
    return [(x, y), (x + w * s, y), (x + w * s, y + h * s), (x, y + h * s)]


def ellipse_cm(a: float, b: float, n: int) -> list[tuple[float, float]]:
    cx, cy = CENTRE
    s = PX_PER_CM
    return [(cx + a * s * math.cos(2 * math.pi * k / n), cy + b * s * math.sin(2 * math.pi * k / n)) for k in range(n)]


def rotated(xy: XY, degrees: float) -> list[tuple[float, float]]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cx, cy = CENTRE
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in xy]


# A non-convex shape (an L with a notch), so hull and polygon differ.
L_SHAPE = [(800, 800), (1100, 800), (1100, 900), (900, 900), (900, 1020), (960, 1020), (960, 1120), (800, 1120)]


# --- measure -------------------------------------------------------------------------------


def test_rectangle_diagonal_and_width_across_it() -> None:
    m = measure(outline(rectangle_cm(4, 3)), REF)
    # Longest diameter is the diagonal; the extent perpendicular to it is 2 * 4 * 3 / 5.
    assert (m.length_cm, m.width_cm, m.area_cm2, m.perimeter_cm) == (5.0, 4.8, 12.0, 14.0)
    assert m.method == METHOD


def test_right_triangle_width_is_its_height_over_the_hypotenuse() -> None:
    m = measure(outline([(100, 100), (300, 100), (100, 250)]), REF)  # legs 4 cm and 3 cm
    assert (m.length_cm, m.width_cm, m.area_cm2, m.perimeter_cm) == (5.0, 2.4, 6.0, 12.0)


def test_circle() -> None:
    m = measure(outline(ellipse_cm(2, 2, 720)), REF)
    assert m.area_cm2 == pytest.approx(math.pi * 4, rel=1e-3)
    assert m.length_cm == pytest.approx(4, abs=0.01)
    assert m.width_cm == pytest.approx(4, abs=0.01)
    assert m.perimeter_cm == pytest.approx(4 * math.pi, rel=1e-3)


def test_ellipse() -> None:
    m = measure(outline(ellipse_cm(3, 1.5, 720)), REF)
    assert m.length_cm == pytest.approx(6, abs=0.01)
    assert m.width_cm == pytest.approx(3, abs=0.01)
    assert m.area_cm2 == pytest.approx(math.pi * 3 * 1.5, rel=1e-3)


def test_orientation_and_starting_point_do_not_matter() -> None:
    xy = L_SHAPE
    expected = measure(outline(xy), REF)
    assert measure(outline(xy[::-1]), REF) == expected
    assert measure(outline(xy[3:] + xy[:3]), REF) == expected


@pytest.mark.parametrize(
    "xy",
    [
        pytest.param(rectangle_cm(4, 3, at=(800, 850)), id="rectangle"),
        pytest.param(ellipse_cm(3, 1.5, 360), id="ellipse"),
        pytest.param(L_SHAPE, id="L"),
        pytest.param(ellipse_cm(2, 2, 720), id="circle"),
    ],
)
def test_rotation_invariance(xy: XY) -> None:
    plain = measure(outline(xy), REF)
    turned = measure(outline(rotated(xy, 37)), REF)
    # Both are rounded to 0.01; a value on a rounding edge may move by one step.
    for field in ("length_cm", "width_cm", "area_cm2", "perimeter_cm"):
        assert getattr(turned, field) == pytest.approx(getattr(plain, field), abs=0.0101), field


def test_scale_invariance() -> None:
    """A closer photo: the wound and the ruler both grow in pixels, the centimetres do not."""
    k = 2.5
    base = measure(outline(L_SHAPE), REF)
    zoomed_ref = Reference(Point(10 * k, 10 * k), Point(110 * k, 10 * k), 2.0)
    zoomed = measure(outline([(x * k, y * k) for x, y in L_SHAPE]), zoomed_ref)
    assert zoomed == base


def test_reference_sets_the_scale() -> None:
    assert REF.cm_per_px == pytest.approx(0.02)
    ruler = Reference(Point(0, 0), Point(30, 40), 1.0)  # 50 px
    assert ruler.length_px == 50
    m = measure(outline(rectangle_cm(4, 3)), ruler)
    assert m.length_cm == 5.0 * PX_PER_CM / 50


def test_non_convex_width_is_the_extent_not_a_chord() -> None:
    # A U open at the top: 300 x 300 px outside, arms 50 px thick.
    u = [(100, 100), (150, 100), (150, 350), (350, 350), (350, 100), (400, 100), (400, 400), (100, 400)]
    m = measure(outline(u), ONE_TO_ONE)
    assert m.length_cm == pytest.approx(300 * math.sqrt(2), abs=0.005)
    assert m.width_cm == pytest.approx(300 * math.sqrt(2), abs=0.005)
    assert m.area_cm2 == 300 * 300 - 200 * 250


# --- outline validation --------------------------------------------------------------------


def test_bow_tie_refused() -> None:
    with pytest.raises(ValueError, match="^outline crosses itself$"):
        outline([(100, 100), (300, 300), (300, 100), (100, 300)])


@pytest.mark.parametrize(
    "xy",
    [
        pytest.param([(0, 1), (4, 1), (4, 4), (2, 4), (2, 0), (1, 4)], id="spike-through-edge"),
        pytest.param([(0, 0), (4, 0), (4, 4), (2, 0), (0, 4)], id="vertex-touches-edge"),
        pytest.param([(0, 0), (2, 2), (4, 0), (4, 4), (2, 2), (0, 4)], id="figure-eight-at-a-vertex"),
        pytest.param([(0, 0), (4, 0), (4, 4), (4, 2)], id="folds-back-along-an-edge"),
        pytest.param([(0, 0), (4, 0), (8, 0)], id="collinear"),
        pytest.param([(0, 0), (4, 0), (4, 4), (0, 4), (2, 4)], id="closing-edge-overlaps"),
    ],
)
def test_touching_and_degenerate_outlines_refused(xy: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError, match="crosses itself|no area"):
        outline([(x + 10, y + 10) for x, y in xy])


def test_near_collinear_but_simple_is_accepted() -> None:
    # Middle vertex 1e-9 px off the line: exact predicates must not call this a crossing.
    o = outline([(10, 10), (20, 10 + 1e-9), (30, 10), (20, 20)])
    assert measure(o, ONE_TO_ONE).area_cm2 == 100.0


@pytest.mark.parametrize(
    ("xy", "message"),
    [
        ([(0, 0), (1, 1)], "3 to 2000 points"),
        ([(0, 0), (10, 0), (10, 0), (0, 10)], "repeats point 1"),
        ([(0, 0), (10, 0), (0, 10), (0, 0)], "repeats point 3"),
        ([(0, 0), (10, 0), (0, math.nan)], "'y' must be a finite number"),
        ([(0, 0), (10, 0), (0, math.inf)], "'y' must be a finite number"),
        ([(-1, 0), (10, 0), (0, 10)], "'x' must be a finite number from 0"),
        ([(0, 0), (10, 0), (0, 200_000)], "'y' must be a finite number"),
    ],
)
def test_bad_outlines(xy: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        outline(xy)


def test_outline_point_count_limit_and_types() -> None:
    with pytest.raises(ValueError, match="got 2001"):
        outline(ellipse_cm(2, 2, 2001))
    with pytest.raises(ValueError, match="'x' must be a number"):
        Point(True, 1)
    with pytest.raises(ValueError, match="'points' must be a tuple"):
        Outline([Point(0, 0), Point(1, 0), Point(0, 1)])  # type: ignore[arg-type]


def test_from_drawn_drops_pauses_and_the_closing_point() -> None:
    drawn = [Point(0, 0), Point(0, 0), Point(10, 0), Point(10, 0), Point(0, 10), Point(0, 0), Point(0, 0)]
    assert Outline.from_drawn(drawn).points == (Point(0, 0), Point(10, 0), Point(0, 10))


def test_2000_points_where_every_edge_overlaps_every_other_in_x_is_fast() -> None:
    """Slanted parallel strips: a pairwise check would compare ~2 million edge pairs."""
    xy: list[tuple[float, float]] = [(50, 0)]
    for k in range(499):
        y = 20 * k
        xy += [(100, y), (5000, y + 40000), (5000, y + 40010), (100, y + 10)]
    xy.append((50, xy[-1][1]))
    started = time.perf_counter()
    outline(xy)
    assert time.perf_counter() - started < 2.0
    # ... and one strip nudged onto its neighbour is found.
    xy[3] = (5000, 40020)
    with pytest.raises(ValueError, match="crosses itself"):
        outline(xy)


# --- reference and measurement validation --------------------------------------------------


@pytest.mark.parametrize(
    ("end", "length_cm", "message"),
    [
        (Point(9, 0), 1.0, "at least 10 px"),
        (Point(100, 0), 0, "above 0"),
        (Point(100, 0), 100.5, "at most 100"),
        (Point(100, 0), math.nan, "above 0"),
        (Point(100, 0), True, "must be a number"),
    ],
)
def test_bad_reference(end: Point, length_cm: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Reference(Point(0, 0), end, length_cm)


def test_reference_of_exactly_10_px_is_enough() -> None:
    assert Reference(Point(0, 0), Point(6, 8), 0.5).cm_per_px == 0.05


def test_measurement_checks_itself() -> None:
    with pytest.raises(ValueError, match="can't exceed"):
        Measurement(1.0, 2.0, 1.0, 4.0)
    with pytest.raises(ValueError, match="'area_cm2' must be a finite number"):
        Measurement(1.0, 1.0, -1.0, 4.0)
    with pytest.raises(ValueError, match="'method'"):
        Measurement(1.0, 1.0, 1.0, 4.0, method="")
    assert Measurement(5.0, 4.8, 12.0, 14.0).to_json() == {
        "lengthCm": 5.0,
        "widthCm": 4.8,
        "areaCm2": 12.0,
        "perimeterCm": 14.0,
        "method": METHOD,
    }


# --- annotations ---------------------------------------------------------------------------

WIRE = {
    "items": [
        {"kind": "arrow", "start": [10, 20], "end": [30.5, 40]},
        {"kind": "text", "at": [50, 60], "text": "slough at 3 o'clock"},
        {"kind": "outline", "points": [[1, 1], [2, 5], [9, 9]]},
    ],
    "reference": {"start": [10, 10], "end": [110, 10], "lengthCm": 2},
    "outline": {"points": [[100, 100], [300, 100], [300, 250], [100, 250]]},
}


def test_annotations_round_trip_and_measure() -> None:
    a = Annotations.from_json(WIRE)
    assert a.items == (
        Arrow(Point(10, 20), Point(30.5, 40)),
        Text(Point(50, 60), "slough at 3 o'clock"),
        OutlineShape((Point(1, 1), Point(2, 5), Point(9, 9))),
    )
    assert a.reference == Reference(Point(10, 10), Point(110, 10), 2)
    assert a.to_json() == WIRE
    assert Annotations.from_json(a.to_json()) == a
    m = a.measurement()
    assert m is not None and (m.length_cm, m.width_cm) == (5.0, 4.8)


def test_empty_annotations() -> None:
    wires: list[dict[str, object]] = [{}, {"items": [], "reference": None, "outline": None}]
    for wire in wires:
        a = Annotations.from_json(wire)
        assert a == Annotations()
        assert a.measurement() is None
    assert Annotations().to_json() == {"items": [], "reference": None, "outline": None}


def bad(**changes: object) -> dict[str, object]:
    return {**WIRE, **changes}


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([], "^annotations must be an object$"),
        (bad(extra=1), "^annotations has an unknown field; it takes items, outline, reference$"),
        (bad(items={}), "^items must be an array$"),
        (bad(items=[{"kind": "circle"}]), r"^items\[0\] has an unknown kind; kinds are arrow, text, outline$"),
        (bad(items=[{"kind": ["arrow"]}]), r"^items\[0\] has an unknown kind; kinds are arrow, text, outline$"),
        (bad(items=[{"kind": "arrow", "start": [1, 1]}]), r"^items\[0\] lacks 'end'$"),
        (bad(items=[{"kind": "arrow", "start": [1, 1], "end": [1, 1]}]), r"^items\[0\]: arrow has no length$"),
        (bad(items=[{"kind": "arrow", "start": [1, 1], "end": [1, 1], "colour": "red"}]), r"^items\[0\] has an unknown field; it takes end, kind, start$"),
        (bad(items=[{"kind": "text", "at": [1, 1], "text": ""}]), r"^items\[0\]: 'text' must be 1 to 200"),
        (bad(items=[{"kind": "text", "at": [1, 1], "text": 5}]), r"^items\[0\]: 'text' must be 1 to 200"),
        (bad(items=[{"kind": "text", "at": "1,1", "text": "x"}]), r"^items\[0\]\.at must be \[x, y\]$"),
        (bad(items=[{"kind": "text", "at": [1, None], "text": "x"}]), r"^items\[0\]\.at: 'y' must be a number$"),
        (bad(items=[{"kind": "outline", "points": [[1, 1]]}]), r"^items\[0\]: 'points' must be a tuple of 2"),
        (bad(reference={"start": [0, 0], "end": [5, 0], "lengthCm": 1}), "^reference: reference must be at least"),
        (bad(reference={"start": [0, 0], "end": [50, 0], "length_cm": 1}), "^reference has an unknown field; it takes end, lengthCm, start$"),
        (bad(reference={"start": [0, 0], "end": [50, 0]}), "^reference lacks 'lengthCm'$"),
        (bad(reference={"start": [0, 0], "end": [50, 0], "lengthCm": "2"}), "'length_cm' must be a number"),
        (bad(outline={"points": [[0, 0], [9, 9], [9, 0], [0, 9]]}), "^outline: outline crosses itself$"),
        (bad(outline=[[0, 0], [9, 0], [0, 9]]), "^outline must be an object$"),
        (bad(outline={"points": [[0, 0]] * 2001}), "^outline.points has more than 2000 entries$"),
        (bad(items=[{"kind": "text", "at": [1, 1], "text": "x"}] * (MAX_ITEMS + 1)), "more than 200 entries"),
        (bad(items=[{"kind": "outline", "points": [[1, 1]] * 2000}] * 11), "more than 20000 points"),
    ],
)
def test_annotations_refuse_bad_input(wire: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Annotations.from_json(wire)


def test_errors_never_echo_long_input() -> None:
    long = "A" * 5000
    cases = [
        bad(**{long: 1}),
        bad(items=[{"kind": long}]),
        bad(items=[{"kind": "text", "at": [1, 1], "text": long}]),
        bad(items=[{"kind": "arrow", "start": [1, 1], "end": [2, 2], long: 0}]),
    ]
    for wire in cases:
        with pytest.raises(ValueError) as info:
            Annotations.from_json(wire)
        assert "A" * 40 not in str(info.value)
        assert len(str(info.value)) < 120


def test_annotations_check_themselves() -> None:
    with pytest.raises(ValueError, match="at most 200"):
        Annotations(items=(Text(Point(1, 1), "x"),) * (MAX_ITEMS + 1))
    with pytest.raises(ValueError, match=r"items\[0\] must be"):
        Annotations(items=("x",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'outline' must be an Outline"):
        Annotations(outline=[(0, 0)])  # type: ignore[arg-type]


# --- cross-checks against brute force ------------------------------------------------------


P = tuple[float, float]


def _orient(a: P, b: P, c: P) -> int:
    d = Fraction(b[0] - a[0]) * (c[1] - a[1]) - Fraction(b[1] - a[1]) * (c[0] - a[0])
    return (d > 0) - (d < 0)


def _closed_segments_meet(p1: P, p2: P, q1: P, q2: P) -> bool:
    def on(p: P, a: P, b: P) -> bool:
        return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])

    d1, d2, d3, d4 = _orient(q1, q2, p1), _orient(q1, q2, p2), _orient(p1, p2, q1), _orient(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return any(
        d == 0 and on(p, a, b)
        for d, p, a, b in ((d1, p1, q1, q2), (d2, p2, q1, q2), (d3, q1, p1, p2), (d4, q2, p1, p2))
    )


def brute_is_simple(xy: XY) -> bool:
    """O(n^2) on the definition: edges meet only where neighbours share their vertex."""
    n = len(xy)
    edges = [(xy[i], xy[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            (a, b), (c, d) = edges[i], edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                u, v, w = (a, b, d) if j == i + 1 else (b, a, c)  # v is the shared vertex
                if _orient(u, v, w) == 0 and (u[0] - v[0]) * (w[0] - v[0]) + (u[1] - v[1]) * (w[1] - v[1]) > 0:
                    return False
            elif _closed_segments_meet(a, b, c, d):
                return False
    return True


def accepts(xy: XY) -> bool:
    try:
        outline(xy)
    except ValueError as exc:
        assert str(exc) in ("outline crosses itself", "outline has no area"), exc
        return False
    return True


def brute_diameter_and_width(xy: XY) -> tuple[float, float]:
    d, a, b = max((math.dist(p, q), p, q) for p in xy for q in xy)
    nx, ny = -(b[1] - a[1]) / d, (b[0] - a[0]) / d
    offsets = [(x - a[0]) * nx + (y - a[1]) * ny for x, y in xy]
    return d, max(offsets) - min(offsets)


def random_grid_polygon(rng: random.Random) -> list[tuple[int, int]]:
    """Few points on a small grid: collinear runs, touching vertices and overlaps galore."""
    n = rng.randint(3, 9)
    xy: list[tuple[int, int]] = []
    while len(xy) < n:
        p = (rng.randint(10, 15), rng.randint(10, 15))
        if not xy or p != xy[-1]:
            xy.append(p)
    if xy[-1] == xy[0]:
        xy.pop()
    return xy


def test_simplicity_matches_brute_force_on_degenerate_grid_polygons() -> None:
    rng = random.Random(20261125)
    simple = 0
    for _ in range(3000):
        xy = random_grid_polygon(rng)
        if len(xy) < 3:
            continue
        expected = brute_is_simple(xy)
        assert accepts(xy) == expected, xy
        simple += expected
    assert simple > 100  # the sample really exercised both answers


def random_star(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """A simple polygon: one vertex in each of n equal sectors around a centre, random radii.

    Consecutive vertices are less than half a turn apart, so each edge stays in its own wedge.
    """
    step = 2 * math.pi / n
    angles = [k * step + rng.uniform(0, 0.9 * step) for k in range(n)]
    return [(5000 + r * math.cos(t), 5000 + r * math.sin(t)) for t, r in ((t, rng.uniform(50, 3000)) for t in angles)]


def test_caliper_diameter_and_width_match_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(200):
        xy = random_star(rng, rng.randint(4, 60))
        m = measure(outline(xy), ONE_TO_ONE)
        length, width = brute_diameter_and_width(xy)
        assert m.length_cm == pytest.approx(length, abs=0.006)
        assert m.width_cm == pytest.approx(width, abs=0.006)


if HAVE_HYPOTHESIS:
    # Quarter pixels: translating by quarter pixels is then exact, so only the method is tested.
    coordinate = st.integers(0, 16000).map(lambda v: v / 4)

    @st.composite
    def convex_polygons(draw: st.DrawFn) -> list[tuple[float, float]]:
        """The hull of random points, counter-clockwise without collinear points."""
        pts = sorted(set(draw(st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=40))))

        def chain(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
            out: list[tuple[float, float]] = []
            for p in seq:
                while len(out) >= 2 and _orient(out[-2], out[-1], p) <= 0:
                    out.pop()
                out.append(p)
            return out

        hull = chain(pts)[:-1] + chain(pts[::-1])[:-1]
        assume(len(hull) >= 3)
        assume(abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(hull, hull[1:] + hull[:1], strict=True))) > 2)
        return hull

    @settings(max_examples=300, deadline=None)
    @given(convex_polygons())
    def test_convex_width_within_length_and_area_within_box(xy: list[tuple[float, float]]) -> None:
        m = measure(outline(xy), ONE_TO_ONE)
        assert m.width_cm <= m.length_cm
        assert m.area_cm2 <= m.length_cm * m.width_cm + 0.01 * (m.length_cm + m.width_cm) + 0.01
        length, width = brute_diameter_and_width(xy)
        assert m.length_cm == pytest.approx(length, abs=0.006)
        assert m.width_cm == pytest.approx(width, abs=0.006)

    @settings(max_examples=200, deadline=None)
    @given(convex_polygons(), coordinate, coordinate)
    def test_translation_invariance(xy: list[tuple[float, float]], dx: float, dy: float) -> None:
        plain = measure(outline(xy), REF)
        moved = measure(outline([(x + dx, y + dy) for x, y in xy]), REF)
        for field in ("length_cm", "width_cm", "area_cm2", "perimeter_cm"):
            assert getattr(moved, field) == pytest.approx(getattr(plain, field), abs=0.0101), field

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=3, max_size=10))
    def test_simplicity_matches_brute_force(xy: list[tuple[int, int]]) -> None:
        assume(all(xy[i] != xy[(i + 1) % len(xy)] for i in range(len(xy))))
        assert accepts(xy) == brute_is_simple(xy)

else:

    def test_properties_need_hypothesis() -> None:
        pytest.skip("hypothesis is not installed")

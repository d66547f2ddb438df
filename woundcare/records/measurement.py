"""Wound measurement from what a specialist draws on a snapshot.

The specialist outlines the wound and marks a reference of known length (a paper ruler in
view). :func:`measure` turns the pixel outline into centimetres using the clinical
convention "longest diameter, and greatest width perpendicular to it":

* **length**: the longest distance between any two points of the outline (its diameter),
  found on the convex hull with rotating calipers;
* **width**: the wound's extent perpendicular to that length, i.e. the distance between the
  two lines parallel to the length that just enclose the wound. For a convex wound this is
  the widest perpendicular chord; for a C-shaped wound it can exceed any single chord;
* **area** by the shoelace formula and **perimeter** of the drawn polygon.

Limitation: one uniform scale (``Reference.cm_per_px``) is applied everywhere. That is only
right when the photo is taken square-on and the reference lies in the wound's plane;
perspective, tilt and the curvature of a limb are not corrected. Area is the projected area.

The annotation wire format (``Annotations.from_json``/``to_json``) uses camelCase for
multi-word names (``lengthCm``) and ``[x, y]`` pairs for points; snake_case inside Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, PrivateAttr, Tag, model_validator
from pydantic_core import PydanticCustomError

from ..validation import StrictObject, an_object, parse

METHOD = "longest-diameter+perpendicular-extent/v1"
"""Stored with every measurement, so a later change of method never mixes silently with old data."""

MAX_COORDINATE = 100_000
"""Pixels. Larger than any snapshot; bounding coordinates also bounds the float error below."""
MIN_REFERENCE_PX = 10.0
MAX_REFERENCE_CM = 100.0
MAX_OUTLINE_POINTS = 2000
MAX_ITEMS = 200
MAX_TEXT_CHARS = 200
MAX_TOTAL_POINTS = 20_000
"""Across all items, so one payload can't make us parse 200 x 2000 points."""

# Tie tolerance for the diameter: symmetric shapes (circles, rectangles) have several
# diameters equal up to rounding noise; picking among them by vertex order would make the
# width depend on how the outline was rotated or where the drawing started.
_DIAMETER_TIE = 1e-9


@dataclass(frozen=True, slots=True)
class Point:
    """A position in image pixels, origin top left."""

    x: float
    y: float

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"'{name}' must be a number")
            # Written so that NaN and infinities fail too.
            if not 0 <= value <= MAX_COORDINATE:
                raise ValueError(f"'{name}' must be a finite number from 0 to {MAX_COORDINATE}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A marked length of known size in the wound's plane, e.g. 2 cm along a paper ruler."""

    start: Point
    end: Point
    length_cm: float
    """The real length between ``start`` and ``end``."""

    def __post_init__(self) -> None:
        _check_point("start", self.start)
        _check_point("end", self.end)
        if isinstance(self.length_cm, bool) or not isinstance(self.length_cm, int | float):
            raise ValueError("'length_cm' must be a number")
        if not 0 < self.length_cm <= MAX_REFERENCE_CM:
            raise ValueError(f"'length_cm' must be above 0 and at most {MAX_REFERENCE_CM:g}")
        # A few pixels of reference would turn one pixel of click error into tens of percent.
        if self.length_px < MIN_REFERENCE_PX:
            raise ValueError(f"reference must be at least {MIN_REFERENCE_PX:g} px long")

    @property
    def length_px(self) -> float:
        return math.dist((self.start.x, self.start.y), (self.end.x, self.end.y))

    @property
    def cm_per_px(self) -> float:
        return self.length_cm / self.length_px


@dataclass(frozen=True, slots=True)
class Outline:
    """The wound's border: a simple closed polygon, implicitly closed (don't repeat the first point)."""

    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.points, tuple):
            raise ValueError("'points' must be a tuple")
        n = len(self.points)
        if not 3 <= n <= MAX_OUTLINE_POINTS:
            raise ValueError(f"outline needs 3 to {MAX_OUTLINE_POINTS} points (got {n})")
        for i, p in enumerate(self.points):
            _check_point(f"points[{i}]", p)
        for i in range(n):
            if self.points[i] == self.points[(i + 1) % n]:
                raise ValueError(f"outline repeats point {i} right after it")
        if _crosses_itself(self.points):
            raise ValueError("outline crosses itself")
        if _signed_area(self.points) == 0:
            raise ValueError("outline has no area")

    @classmethod
    def from_drawn(cls, points: Iterable[Point]) -> Outline:
        """An outline from freehand input, which repeats points when the pointer rests and often
        closes by returning to its start."""
        kept: list[Point] = []
        for p in points:
            if not kept or p != kept[-1]:
                kept.append(p)
        while len(kept) > 1 and kept[-1] == kept[0]:
            kept.pop()
        return cls(tuple(kept))


@dataclass(frozen=True, slots=True)
class Measurement:
    """A wound's size in centimetres, rounded to 0.01 (finer than any drawing is accurate)."""

    length_cm: float
    """Longest diameter."""
    width_cm: float
    """Greatest extent perpendicular to the length."""
    area_cm2: float
    perimeter_cm: float
    method: str = METHOD

    def __post_init__(self) -> None:
        for name in ("length_cm", "width_cm", "area_cm2", "perimeter_cm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"'{name}' must be a finite number >= 0")
        if self.width_cm > self.length_cm:
            raise ValueError("'width_cm' can't exceed 'length_cm'")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError("'method' must be a non-empty string")

    def to_json(self) -> dict[str, Any]:
        return {
            "lengthCm": self.length_cm,
            "widthCm": self.width_cm,
            "areaCm2": self.area_cm2,
            "perimeterCm": self.perimeter_cm,
            "method": self.method,
        }


def measure(outline: Outline, reference: Reference) -> Measurement:
    """Length, width, area and perimeter of ``outline``, scaled by ``reference``.

    See the module docstring for the convention; the scale is uniform, so the snapshot must be
    square-on and the reference in the wound's plane.
    """
    pts = outline.points
    hull = _convex_hull(pts)
    a, b = _diameter(hull)
    length_px = math.dist(a, b)
    # Equal in theory for round wounds; don't let float noise put width above length.
    width_px = min(_extent_across(hull, a, b), length_px)
    area_px = abs(_signed_area(pts))
    perimeter_px = math.fsum(math.dist((p.x, p.y), (q.x, q.y)) for p, q in _edges(pts))
    k = reference.cm_per_px
    return Measurement(
        length_cm=round(length_px * k, 2),
        width_cm=round(width_px * k, 2),
        area_cm2=round(area_px * k * k, 2),
        perimeter_cm=round(perimeter_px * k, 2),
    )


# --- geometry ------------------------------------------------------------------------------

_XY = tuple[float, float]


def _edges(pts: Sequence[Point]) -> Iterator[tuple[Point, Point]]:
    return zip(pts, (*pts[1:], pts[0]), strict=True)


def _signed_area(pts: Sequence[Point]) -> float:
    # Relative to the first point: with coordinates near 1e5 the plain formula loses digits.
    x0, y0 = pts[0].x, pts[0].y
    return math.fsum((p.x - x0) * (q.y - y0) - (q.x - x0) * (p.y - y0) for p, q in _edges(pts)) / 2


# Shewchuk's bound for orient2d computed as below in doubles: beyond it the sign is certain.
_CROSS_BOUND = (3.0 + 16.0 * 2.0**-53) * 2.0**-53


def _cross_sign(a: Point, b: Point, c: Point, d: Point) -> int:
    """The exact sign of (b - a) x (d - c); orientation of a, b, d when c is a.

    Float first, exact rationals only when the float result is too close to zero to trust:
    the simplicity test and the hull must not be fooled by near-collinear points.
    """
    left = (b.x - a.x) * (d.y - c.y)
    right = (b.y - a.y) * (d.x - c.x)
    det = left - right
    if abs(det) > _CROSS_BOUND * (abs(left) + abs(right)):
        return (det > 0) - (det < 0)
    F = Fraction
    exact = (F(b.x) - F(a.x)) * (F(d.y) - F(c.y)) - (F(b.y) - F(a.y)) * (F(d.x) - F(c.x))
    return (exact > 0) - (exact < 0)


def _orient(a: Point, b: Point, c: Point) -> int:
    return _cross_sign(a, b, a, c)


def _on_box(p: Point, a: Point, b: Point) -> bool:
    """Whether ``p``, known collinear with ``a b``, lies on that segment."""
    return min(a.x, b.x) <= p.x <= max(a.x, b.x) and min(a.y, b.y) <= p.y <= max(a.y, b.y)


def _segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and _on_box(p1, q1, q2))
        or (d2 == 0 and _on_box(p2, q1, q2))
        or (d3 == 0 and _on_box(q1, p1, p2))
        or (d4 == 0 and _on_box(q2, p1, p2))
    )


def _crosses_itself(pts: Sequence[Point]) -> bool:
    """Whether any two edges meet, other than neighbouring edges at their shared vertex.

    Shamos-Hoey: sweep left to right keeping the edges under the sweep line ordered bottom
    to top, and test only edges that become neighbours in that order; O(n log n) decisions.
    Every decision is an exact predicate, and the sweep stops at the first meeting found, so
    the order it relies on is never built from rounded or already-crossed edges.
    """
    n = len(pts)
    if len(set(pts)) != n:
        return True  # a vertex visited twice: the outline touches itself there
    # Edge i runs from vertex i to i + 1; keep its lexicographically smaller end as "left".
    lo_end: list[Point] = []
    hi_end: list[Point] = []
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        a_first = (a.x, a.y) < (b.x, b.y)
        lo_end.append(a if a_first else b)
        hi_end.append(b if a_first else a)

    def meet(i: int, j: int) -> bool:
        if (i - j) % n in (1, n - 1):
            # Neighbouring edges share a vertex; they only go wrong by folding back onto each other.
            v = pts[max(i, j) if abs(i - j) == 1 else 0]
            u = lo_end[i] if hi_end[i] == v else hi_end[i]
            w = lo_end[j] if hi_end[j] == v else hi_end[j]
            return _orient(u, v, w) == 0 and (u.x - v.x) * (w.x - v.x) + (u.y - v.y) * (w.y - v.y) > 0
        return _segments_meet(lo_end[i], hi_end[i], lo_end[j], hi_end[j])

    # At one point, edges ending there leave (0) before edges starting there enter (1).
    events = sorted(
        [((p.x, p.y), 0, i) for i, p in enumerate(hi_end)] + [((p.x, p.y), 1, i) for i, p in enumerate(lo_end)]
    )
    status: list[int] = []
    for _, enters, s in events:
        if not enters:
            k = status.index(s)
            if 0 < k < len(status) - 1 and meet(status[k - 1], status[k + 1]):
                return True
            del status[k]
            continue
        p = lo_end[s]
        lo, hi = 0, len(status)
        while lo < hi:
            mid = (lo + hi) // 2
            t = status[mid]
            # Where edge s starts relative to edge t; from a shared start, by direction.
            side = _orient(p, hi_end[t], hi_end[s]) if lo_end[t] == p else _orient(lo_end[t], hi_end[t], p)
            if side == 0:
                return True  # s starts on t, or runs along it
            if side > 0:
                lo = mid + 1
            else:
                hi = mid
        status.insert(lo, s)
        if (lo > 0 and meet(s, status[lo - 1])) or (lo + 1 < len(status) and meet(s, status[lo + 1])):
            return True
    return False


def _convex_hull(pts: Iterable[Point]) -> list[Point]:
    """Andrew's monotone chain: counter-clockwise (y up), without collinear points."""
    ordered = sorted(set(pts), key=lambda p: (p.x, p.y))
    if len(ordered) < 3:
        return ordered

    def chain(seq: Iterable[Point]) -> list[Point]:
        out: list[Point] = []
        for p in seq:
            while len(out) >= 2 and _orient(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(ordered), chain(reversed(ordered))
    return lower[:-1] + upper[:-1]


def _diameter(hull: Sequence[Point]) -> tuple[_XY, _XY]:
    """The farthest pair of hull vertices, by rotating calipers (O(h)).

    Among pairs tied within ``_DIAMETER_TIE`` the one with the greatest perpendicular extent
    wins, which makes the width independent of rotation and of where the drawing started.
    """
    m = len(hull)
    xy = [(p.x, p.y) for p in hull]
    if m < 3:
        return xy[0], xy[-1]
    pairs: set[tuple[int, int]] = set()
    j = 1
    for i in range(m):
        ni = (i + 1) % m
        # Advance j while the next hull edge still moves away from edge i (exact sign).
        for _ in range(m):
            if _cross_sign(hull[i], hull[ni], hull[j], hull[(j + 1) % m]) <= 0:
                break
            j = (j + 1) % m
        # j + 1 too: when its edge is parallel to edge i, both ends are farthest.
        for k in (j, (j + 1) % m):
            pairs.add((min(i, k), max(i, k)))
            pairs.add((min(ni, k), max(ni, k)))
    d2 = {pair: (xy[pair[0]][0] - xy[pair[1]][0]) ** 2 + (xy[pair[0]][1] - xy[pair[1]][1]) ** 2 for pair in pairs}
    longest = max(d2.values())
    tied = sorted(pair for pair, d in d2.items() if d >= longest * (1 - _DIAMETER_TIE))
    best = max(tied, key=lambda pair: _extent_across(hull, xy[pair[0]], xy[pair[1]]))
    return xy[best[0]], xy[best[1]]


def _extent_across(hull: Sequence[Point], a: _XY, b: _XY) -> float:
    """The hull's extent perpendicular to the direction from ``a`` to ``b``."""
    length = math.dist(a, b)
    nx, ny = -(b[1] - a[1]) / length, (b[0] - a[0]) / length
    offsets = [(p.x - a[0]) * nx + (p.y - a[1]) * ny for p in hull]
    return max(offsets) - min(offsets)


# --- annotations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrow:
    """Points at something; the head is at ``end``."""

    start: Point
    end: Point

    def __post_init__(self) -> None:
        _check_point("start", self.start)
        _check_point("end", self.end)
        if self.start == self.end:
            raise ValueError("arrow has no length")


@dataclass(frozen=True, slots=True)
class Text:
    at: Point
    """Where the label's anchor is."""
    text: str

    def __post_init__(self) -> None:
        _check_point("at", self.at)
        if not isinstance(self.text, str) or not 1 <= len(self.text) <= MAX_TEXT_CHARS:
            raise ValueError(f"'text' must be 1 to {MAX_TEXT_CHARS} characters")


@dataclass(frozen=True, slots=True)
class OutlineShape:
    """A freehand line or shape drawn for the eye (e.g. undermining); not measured, not checked
    for crossings."""

    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.points, tuple) or not 2 <= len(self.points) <= MAX_OUTLINE_POINTS:
            raise ValueError(f"'points' must be a tuple of 2 to {MAX_OUTLINE_POINTS} points")
        for i, p in enumerate(self.points):
            _check_point(f"points[{i}]", p)


Item = Arrow | Text | OutlineShape


@dataclass(frozen=True, slots=True)
class Annotations:
    """Everything a specialist drew on one snapshot."""

    items: tuple[Item, ...] = ()
    reference: Reference | None = None
    outline: Outline | None = None
    """The wound's border, the one that is measured."""

    def __post_init__(self) -> None:
        if not isinstance(self.items, tuple) or len(self.items) > MAX_ITEMS:
            raise ValueError(f"'items' must be a tuple of at most {MAX_ITEMS}")
        for i, item in enumerate(self.items):
            if not isinstance(item, Arrow | Text | OutlineShape):
                raise ValueError(f"items[{i}] must be an Arrow, Text or OutlineShape")
        total = sum(len(item.points) for item in self.items if isinstance(item, OutlineShape))
        if total > MAX_TOTAL_POINTS:
            raise ValueError(f"items hold more than {MAX_TOTAL_POINTS} points")
        if self.reference is not None and not isinstance(self.reference, Reference):
            raise ValueError("'reference' must be a Reference or None")
        if self.outline is not None and not isinstance(self.outline, Outline):
            raise ValueError("'outline' must be an Outline or None")

    def measurement(self) -> Measurement | None:
        """The wound's measurement, once both the outline and the reference are drawn."""
        if self.outline is None or self.reference is None:
            return None
        return measure(self.outline, self.reference)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [_item_to_json(item) for item in self.items],
            "reference": None
            if self.reference is None
            else {
                "start": _point_to_json(self.reference.start),
                "end": _point_to_json(self.reference.end),
                "lengthCm": self.reference.length_cm,
            },
            "outline": None if self.outline is None else {"points": [_point_to_json(p) for p in self.outline.points]},
        }

    @classmethod
    def from_json(cls, data: object) -> Annotations:
        """Parse the wire form strictly; every error is a ValueError naming where, never echoing input."""
        return parse(_WireAnnotations, data, _RULES, root="annotations", tags=frozenset(_KINDS)).annotations


def _check_point(name: str, value: object) -> None:
    if not isinstance(value, Point):
        raise ValueError(f"'{name}' must be a Point")


def _point_to_json(p: Point) -> list[float]:
    return [p.x, p.y]


def _item_to_json(item: Item) -> dict[str, Any]:
    if isinstance(item, Arrow):
        return {"kind": "arrow", "start": _point_to_json(item.start), "end": _point_to_json(item.end)}
    if isinstance(item, Text):
        return {"kind": "text", "at": _point_to_json(item.at), "text": item.text}
    return {"kind": "outline", "points": [_point_to_json(p) for p in item.points]}


# --- the wire form, checked by pydantic ------------------------------------------------------

_KINDS = ("arrow", "text", "outline")
_RULES = {
    "object": "{where} must be an object",
    "unknown_field": "{where} has an unknown field; it takes {fields}",
    "lacks": "{where} lacks '{field}'",
    "list_type": "{where} must be an array",
    "too_long": "{where} has more than {max_length} entries",
    "kind": "{where} has an unknown kind; kinds are {kinds}",
    "point": "{where} must be [x, y]",
    "too_many_points": "items hold more than {max_points} points",
    "value_error": "{where}: {error}",
}
"""The annotation format's rules in its own words (see :func:`woundcare.validation.parse`)."""


def _point(value: object) -> Point:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise PydanticCustomError("point", "[x, y]")
    # Point checks the numbers; its ValueError is told as "<where>: <its message>".
    return Point(value[0], value[1])


_WirePoint = Annotated[Point, BeforeValidator(_point)]
_WirePoints = Annotated[list[_WirePoint], Field(max_length=MAX_OUTLINE_POINTS)]


class _WireArrow(StrictObject):
    kind: Literal["arrow"]
    start: _WirePoint
    end: _WirePoint

    def build(self) -> Arrow:
        return Arrow(self.start, self.end)


class _WireText(StrictObject):
    kind: Literal["text"]
    at: _WirePoint
    text: Any
    """Checked by :class:`Text`, so its rule has one wording."""

    def build(self) -> Text:
        return Text(self.at, self.text)


class _WireOutlineShape(StrictObject):
    kind: Literal["outline"]
    points: _WirePoints

    def build(self) -> OutlineShape:
        return OutlineShape(tuple(self.points))


def _kind(value: object) -> str | None:
    kind = value.get("kind") if isinstance(value, Mapping) else None
    return kind if isinstance(kind, str) and kind in _KINDS else None


_WireItem = Annotated[
    Annotated[_WireArrow, Tag("arrow")] | Annotated[_WireText, Tag("text")] | Annotated[_WireOutlineShape, Tag("outline")],
    Discriminator(
        _kind,
        custom_error_type="kind",
        custom_error_message="a known kind",
        custom_error_context={"kinds": ", ".join(_KINDS)},
    ),
    # Before the kind is looked up, so a list or a string is told as not an object.
    BeforeValidator(an_object),
    AfterValidator(lambda wire: wire.build()),
]


class _WireReference(StrictObject):
    start: _WirePoint
    end: _WirePoint
    length_cm: Annotated[Any, Field(alias="lengthCm")]
    """Checked by :class:`Reference`."""

    def build(self) -> Reference:
        return Reference(self.start, self.end, self.length_cm)


class _WireOutline(StrictObject):
    points: _WirePoints

    def build(self) -> Outline:
        return Outline(tuple(self.points))


class _WireAnnotations(StrictObject):
    items: Annotated[list[_WireItem], Field(max_length=MAX_ITEMS)] = []
    reference: Annotated[_WireReference | None, AfterValidator(lambda wire: wire and wire.build())] = None
    outline: Annotated[_WireOutline | None, AfterValidator(lambda wire: wire and wire.build())] = None

    @model_validator(mode="before")
    @classmethod
    def _points_in_bounds(cls, data: object) -> object:
        # Counted before any item is parsed, so an oversized payload costs no work.
        items = data.get("items") if isinstance(data, Mapping) else None
        if isinstance(items, list):
            total = sum(len(i["points"]) for i in items if isinstance(i, Mapping) and isinstance(i.get("points"), list))
            if total > MAX_TOTAL_POINTS:
                raise PydanticCustomError("too_many_points", "fewer points", {"max_points": MAX_TOTAL_POINTS})
        return data

    _annotations: Annotations = PrivateAttr()

    @model_validator(mode="after")
    def _whole(self) -> _WireAnnotations:
        # The items, reference and outline were built by their AfterValidators.
        self._annotations = Annotations(tuple(self.items), self.reference, self.outline)  # type: ignore[arg-type]
        return self

    @property
    def annotations(self) -> Annotations:
        return self._annotations

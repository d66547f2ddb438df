"""Call-quality samples (bitrate, loss, round-trip time) reported by the clients."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from ..db.database import Database
from ..db.models import QualitySample
from ..errors import InvalidInput

_BOUNDS: dict[str, tuple[float, float]] = {
    "bitrateKbps": (0, 100_000),
    "lossPct": (0, 100),
    "rttMs": (0, 60_000),
    "fps": (0, 240),
    "width": (0, 10_000),
    "height": (0, 10_000),
}


class QualityError(InvalidInput):
    """A sample that is not one; the message names the field."""

    code = "bad_sample"


@dataclass(frozen=True, slots=True)
class Sample:
    direction: str
    values: dict[str, float | None]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        if set(data) - set(_BOUNDS) - {"direction"}:
            raise QualityError(f"unknown field; a sample takes direction, {', '.join(_BOUNDS)}")
        direction = data.get("direction")
        if direction not in ("send", "receive"):
            raise QualityError("'direction' must be send or receive")
        values: dict[str, float | None] = {}
        for name, (low, high) in _BOUNDS.items():
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                raise QualityError(f"'{name}' must be a number from {low:g} to {high:g}")
            values[name] = value
        return cls(direction, values)


class Quality:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, consultation_id: str, region_id: int, role: str, sample: Sample) -> None:
        v = sample.values
        width, height = v["width"], v["height"]
        async with self._db.engine.begin() as connection:
            await connection.execute(
                insert(QualitySample).values(
                    consultation_id=consultation_id,
                    region_id=region_id,
                    role=role,
                    direction=sample.direction,
                    bitrate_kbps=v["bitrateKbps"],
                    loss_pct=v["lossPct"],
                    rtt_ms=v["rttMs"],
                    fps=v["fps"],
                    width=int(width) if width is not None else None,
                    height=int(height) if height is not None else None,
                )
            )

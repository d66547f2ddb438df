"""Fictional national id numbers with valid control digits, as many as a test needs."""

from __future__ import annotations

from woundcare.records.patients import with_control_digits


def national_ids(how_many: int) -> list[str]:
    """``how_many`` distinct valid numbers born 01.01.1980 (not all nine digits complete)."""
    found: list[str] = []
    for individual in range(100, 1000):
        number = with_control_digits(f"010180{individual:03d}")
        if number is not None:
            found.append(number)
        if len(found) == how_many:
            return found
    raise ValueError(f"fewer than {how_many} such numbers")

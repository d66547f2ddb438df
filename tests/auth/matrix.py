"""The authorization matrix as docs/security.md writes it: the oracle the tests check against."""

from __future__ import annotations

import re
from pathlib import Path

from woundcare.db.models import StaffRole

DOC = Path(__file__).parents[2] / "docs" / "security.md"
ROLES = [StaffRole.NURSE, StaffRole.SPECIALIST, StaffRole.PILOT_LEAD, StaffRole.ADMIN]


def documented() -> dict[str, tuple[str, dict[StaffRole, bool]]]:
    """Each row's route (``GET /api/...``, ``WS /ws join``): its action and who may."""
    rows: dict[str, tuple[str, dict[StaffRole, bool]]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.match(r"^(GET|POST|PUT|PATCH|DELETE|WS) /", cells[0]):
            rows[cells[0]] = (cells[1], {role: cells[2 + i] == "yes" for i, role in enumerate(ROLES)})
    return rows


def allowed_by_action() -> dict[str, frozenset[StaffRole]]:
    """Who may take each action, by the documented rows (public routes left out)."""
    found: dict[str, frozenset[StaffRole]] = {}
    for action, allowed in documented().values():
        if action != "public":
            roles = frozenset(role for role, yes in allowed.items() if yes)
            assert found.setdefault(action, roles) == roles, f"{action}: rows disagree"
    return found

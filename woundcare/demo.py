"""The demo a new user gets on first start: one region, one user per role, and a
fictional patient with a waiting consultation. Nothing here is real patient data."""

from __future__ import annotations

from dataclasses import dataclass

from .auth.passwords import hash_password
from .db.models import StaffRole
from .records.demo import DemoUser, seed_accounts
from .records.patients import PatientIdentity, with_control_digits
from .services import Services

DEMO_REGION = "demo"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    password: str
    role: StaffRole


DEMO_LOGINS = (
    DemoLogin("sykepleier", "demo-sykepleier", StaffRole.NURSE),
    DemoLogin("spesialist", "demo-spesialist", StaffRole.SPECIALIST),
    DemoLogin("pilotleder", "demo-pilotleder", StaffRole.PILOT_LEAD),
    DemoLogin("admin", "demo-admin", StaffRole.ADMIN),
)

_NAMES = {
    StaffRole.NURSE: "Demo Sykepleier",
    StaffRole.SPECIALIST: "Demo Sårspesialist",
    StaffRole.PILOT_LEAD: "Demo Pilotleder",
    StaffRole.ADMIN: "Demo Administrator",
}


# A synthetic test number (month + 80), never issued to a person.
DEMO_PATIENT = PatientIdentity(with_control_digits("010180123") or "", "Kari Demo Nordmann")


async def seed_demo(services: Services) -> bool:
    """Fill an empty database with the demo; returns False if it was not empty."""
    users = [
        DemoUser(login.username, _NAMES[login.role], hash_password(login.password), login.role) for login in DEMO_LOGINS
    ]
    region_id = await seed_accounts(services.database, DEMO_REGION, "Demo pilot region", users)
    if region_id is None:
        return False
    patient = await services.patients.register(region_id, DEMO_PATIENT)
    found = await services.patients.find(patient.pseudonym)
    assert found is not None
    await services.consultations.start(found, None)
    return True


async def demo_consultation(services: Services) -> str | None:
    """The demo region's newest open consultation, if any."""
    return await services.consultations.newest_open(DEMO_REGION)

"""Patients: a pseudonym per region; name and national id number sealed with the region's key."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import select

from ..crypto import Binding, Keyring
from ..db.database import Database
from ..db.models import Patient, new_public_id

IDENTITY_KIND = "patient_identity"

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _control(digits: list[int], weights: tuple[int, ...]) -> int:
    rest = 11 - sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
    return 0 if rest == 11 else rest


def valid_national_id(value: str) -> bool:
    """Norwegian fødselsnummer, D-number or synthetic test number: 11 digits, two mod-11 control digits."""
    if len(value) != 11 or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    k1 = _control(digits[:9], _K1)
    k2 = _control(digits[:10], _K2)
    return k1 < 10 and k2 < 10 and digits[9] == k1 and digits[10] == k2


def with_control_digits(first_nine: str) -> str | None:
    """Complete nine digits into a valid number, or None if no control digit fits."""
    digits = [int(c) for c in first_nine]
    k1 = _control(digits, _K1)
    if k1 == 10:
        return None
    k2 = _control([*digits, k1], _K2)
    return None if k2 == 10 else f"{first_nine}{k1}{k2}"


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    national_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PatientView:
    pseudonym: str
    region_id: int
    identity: PatientIdentity | None


class Patients:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    async def register(
        self, region_id: int, identity: PatientIdentity, municipality: str | None = None
    ) -> PatientView:
        patient = Patient(region_id=region_id, pseudonym=new_public_id(), municipality=municipality)
        plaintext = orjson.dumps({"nationalId": identity.national_id, "name": identity.name})
        patient.identity_sealed = await self._keyring.seal(self._binding(patient), plaintext)
        async with self._db.sessions() as session, session.begin():
            session.add(patient)
        return PatientView(patient.pseudonym, region_id, identity)

    async def find(self, pseudonym: str) -> Patient | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(Patient).where(Patient.pseudonym == pseudonym))

    async def in_regions(self, region_ids: list[int], limit: int = 200) -> list[Patient]:
        async with self._db.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Patient)
                        .where(Patient.region_id.in_(region_ids))
                        .order_by(Patient.created_at.desc())
                        .limit(limit)
                    )
                ).all()
            )

    async def identity(self, patient: Patient) -> PatientIdentity | None:
        if patient.identity_sealed is None:
            return None
        data = orjson.loads(await self._keyring.open(self._binding(patient), patient.identity_sealed))
        return PatientIdentity(data["nationalId"], data["name"])

    @staticmethod
    def _binding(patient: Patient) -> Binding:
        return Binding(patient.region_id, IDENTITY_KIND, patient.pseudonym)

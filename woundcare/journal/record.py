"""What a journal document holds, gathered from the record services: the signed assessment,
who the patient is (the sealed identity opened), who signed it, the region, and the photos
as the record stores them (the sealed blobs opened, bytes unchanged).

Only a signed assessment leaves: a draft may still change (:class:`NotSigned`, 409).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..db.models import StaffRole
from ..errors import WoundcareError
from ..fhir.elements import named_role
from ..records.assessments import AssessmentView, NotSigned
from ..records.consultations import ConsultationView
from ..records.patients import PatientIdentity
from ..records.snapshots import SnapshotView
from ..refs import Kind, parse, user_ref
from ..services import Services
from . import words


class NoIdentity(WoundcareError):
    """A journal document names its patient; this one has no identity on record."""

    code = "no_identity"
    status = 409
    message = "the patient has no identity on record to put in a journal document"


@dataclass(frozen=True, slots=True)
class Clinician:
    """A staff member as the journal names them."""

    ref: str
    """``u<id>``: the document's ids for them are keyed on it, never show it."""
    name: str
    role: StaffRole | None
    """Their role in the consultation's region."""
    hpr: str | None = None
    """The HPR number (Helsepersonellregisteret), from the user's record (stored at a HelseID
    login or by ``woundcare user hpr``); :mod:`.document` adds it as the no-basis ``HPR``
    identifier."""

    @property
    def display(self) -> str:
        """Their name; their role if the account is gone."""
        if self.name:
            return self.name
        return words.ROLES[self.role] if self.role else "Helsepersonell"


@dataclass(frozen=True, slots=True)
class Photo:
    snapshot: SnapshotView
    data: bytes
    """The image exactly as stored (JPEG, metadata already removed at upload)."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    consultation: ConsultationView
    patient: PatientIdentity
    assessment: AssessmentView
    """Signed: ``signed_at`` and ``signed_by`` are set."""
    signer: Clinician
    nurse: Clinician | None
    """Who started the consultation, if a staff member did."""
    photos: tuple[Photo, ...]


async def gather(services: Services, consultation: ConsultationView) -> JournalRecord:
    """The journal record of ``consultation`` (the caller has authorized and audits the
    access). Raises :class:`NotSigned` without a signed assessment, :class:`NoIdentity` for
    a patient without one; a shredded region's :class:`KeyShreddedError` rises as it is."""
    assessment = await services.assessments.get(consultation.id)
    if assessment is None or assessment.signed_at is None or assessment.signed_by is None:
        raise NotSigned
    patient = await services.patients.find(consultation.patient)
    identity = await services.patients.identity(patient) if patient is not None else None
    if identity is None:
        raise NoIdentity
    nurse_id = await services.consultations.creator(consultation.id)
    photos = []
    for view in await services.snapshots.of_consultation(consultation.id):
        row = await services.snapshots.get(view.id)
        if row is not None:
            photos.append(Photo(view, await services.snapshots.image(row)))
    return JournalRecord(
        consultation,
        identity,
        assessment,
        await _clinician(services, assessment.signed_by, consultation.region_id),
        await _clinician(services, user_ref(nurse_id), consultation.region_id) if nurse_id is not None else None,
        tuple(photos),
    )


async def _clinician(services: Services, ref: str, region_id: int) -> Clinician:
    found = parse(ref)
    user = await services.accounts.user(found[1]) if found is not None and found[0] is Kind.USER else None
    if user is None:
        return Clinician(ref, "", None)
    memberships = await services.accounts.memberships(user.id)
    return Clinician(
        ref,
        user.display_name,
        named_role(role for region, role in memberships if region == region_id),
        user.hpr_number,
    )

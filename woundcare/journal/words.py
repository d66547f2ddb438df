"""The journal document's words, in Norwegian (bokmål): it is written for Norwegian journals.
The same wording as the specialist's form (``web/i18n/nb.js``), so the note reads as the
assessment was written. One reader of an assessment for both the Bundle's narrative and the PDF.
"""

from __future__ import annotations

from datetime import date

from ..db.models import ConsultationKind, Outcome, StaffRole
from ..records.assessments import AssessmentContent, Exudate, InfectionSign, Responsible, WoundType

TITLES = {
    ConsultationKind.VIDEO: "Sårvurdering (videokonsultasjon)",
    ConsultationKind.ECONSULT: "Sårvurdering (e-konsultasjon)",
}
ROLES = {
    StaffRole.SPECIALIST: "Sårspesialist",
    StaffRole.NURSE: "Sykepleier",
    StaffRole.PILOT_LEAD: "Pilotleder",
    StaffRole.ADMIN: "Administrator",
}

WOUND_TYPES = {
    WoundType.PRESSURE_ULCER: "Trykksår",
    WoundType.VENOUS_LEG_ULCER: "Venøst leggsår",
    WoundType.ARTERIAL_ULCER: "Arterielt sår",
    WoundType.DIABETIC_FOOT_ULCER: "Diabetisk fotsår",
    WoundType.SURGICAL_WOUND: "Operasjonssår",
    WoundType.TRAUMATIC_WOUND: "Traumatisk sår",
    WoundType.BURN: "Brannskade",
    WoundType.OTHER: "Annet",
}
TISSUES = {"granulation": "Granulasjon", "slough": "Fibrin", "necrotic": "Nekrose", "epithelial": "Epitel"}
EXUDATES = {Exudate.NONE: "Ingen", Exudate.LOW: "Lite", Exudate.MODERATE: "Moderat", Exudate.HIGH: "Mye"}
SIGNS = {
    InfectionSign.ERYTHEMA: "Rødme",
    InfectionSign.WARMTH: "Varme",
    InfectionSign.SWELLING: "Hevelse",
    InfectionSign.PAIN: "Smerte",
    InfectionSign.ODOUR: "Lukt",
    InfectionSign.PUS: "Puss",
    InfectionSign.FEVER: "Feber",
}
RESPONSIBLE = {
    Responsible.HOME_CARE: "Hjemmesykepleien (kommunen)",
    Responsible.SPECIALIST: "Spesialisthelsetjenesten (sårpoliklinikk)",
    Responsible.GP: "Fastlege",
}
OUTCOMES = {Outcome.TREATED_AT_HOME: "Behandlet hjemme", Outcome.REFERRED: "Henvist", Outcome.HEALED: "Tilhelet"}
SIZES = {"lengthCm": "lengde", "widthCm": "bredde", "depthCm": "dybde"}

FINDINGS = "Funn"
PLAN = "Behandlingsplan"
NEXT_REVIEW = "Neste kontroll"
RESPONSIBLE_TITLE = "Ansvarlig"
OUTCOME = "Utfall"
MEASUREMENTS = "Målinger"
PHOTOS = "Bilder"
PHOTO = "Bilde"


def title(kind: ConsultationKind) -> str:
    return TITLES[kind]


def number(value: float) -> str:
    """A decimal the Norwegian way: ``2,5``."""
    return f"{value:g}".replace(".", ",")


def day(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def findings(content: AssessmentContent) -> list[str]:
    """The specialist's findings, one line each, in the form's order."""
    lines = []
    if content.wound_type:
        lines.append(f"Sårtype: {WOUND_TYPES[content.wound_type]}")
    if content.location:
        lines.append(f"Lokalisering: {content.location}")
    if content.size:
        lines.append("Størrelse (vurdert): " + ", ".join(
            f"{SIZES[name]} {number(value)} cm" for name, value in content.size.items()))
    if content.tissue:
        lines.append("Sårbunn: " + ", ".join(f"{TISSUES[name]} {share} %" for name, share in content.tissue.items()))
    if content.exudate:
        lines.append(f"Væsking: {EXUDATES[content.exudate]}")
    if content.infection_signs:
        lines.append("Tegn på infeksjon: " + ", ".join(SIGNS[s] for s in content.infection_signs))
    return lines


def plan(content: AssessmentContent) -> list[tuple[str, str]]:
    """The plan back to the nurse, as (title, text) pairs; what was left out is not shown."""
    parts = []
    if content.treatment_plan:
        parts.append((PLAN, content.treatment_plan))
    if content.next_review:
        parts.append((NEXT_REVIEW, day(content.next_review)))
    if content.responsible:
        parts.append((RESPONSIBLE_TITLE, RESPONSIBLE[content.responsible]))
    if content.outcome:
        parts.append((OUTCOME, OUTCOMES[content.outcome]))
    return parts

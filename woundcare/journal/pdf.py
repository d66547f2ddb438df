"""A signed assessment as a PDF note, for journals that take attachments rather than FHIR.

PDF/A-2U as fpdf2 writes it (``enforce_compliance``): every font embedded (DejaVu Sans, vendored
under ``fonts/`` with its licence, so the note looks the same on any server and covers æ, ø, å
and Sámi letters), text mapped to Unicode, XMP metadata, the sRGB output intent, no
encryption, no links or other external references. (Not checked by a PDF/A validator here.)
The photos go in as the record stores them: fpdf2 embeds a JPEG's bytes unchanged
(``DCTDecode``), so the note shows the image the Bundle's hash names.

:func:`render_note` is CPU work (font subsetting, compression): run it in a thread.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

from . import words
from .record import JournalRecord

FONTS = Path(__file__).parent / "fonts"
FAMILY = "DejaVuSans"
_PHOTO_WIDTH_MM = 120.0
_PHOTO_HEIGHT_MM = 110.0


def render_note(record: JournalRecord) -> bytes:
    """The PDF note of ``record``: the assessment text, plan, next review, responsible,
    measurements and the photos."""
    consultation, assessment = record.consultation, record.assessment
    signed_at = assessment.signed_at
    assert signed_at is not None  # gather() hands over signed assessments only
    title = words.title(consultation.kind)

    pdf = FPDF(format="A4", unit="mm", enforce_compliance="PDFA_2U")
    pdf.add_font(FAMILY, "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font(FAMILY, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_title(title)
    pdf.set_author(record.signer.display)
    pdf.set_subject("Sårvurdering signert av spesialist")
    pdf.set_creator("woundcare")
    pdf.set_lang("nb")
    pdf.set_creation_date(signed_at)
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()

    def heading(text: str, size: float = 12) -> None:
        pdf.set_font(FAMILY, "B", size)
        pdf.multi_cell(0, size * 0.55, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)

    def line(text: str) -> None:
        pdf.set_font(FAMILY, "", 10.5)
        pdf.multi_cell(0, 5.5, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    heading(title, 16)
    line(f"Pasient: {record.patient.name}")
    line(f"Fødselsnummer/D-nummer: {record.patient.national_id}")
    line(f"Region: {consultation.region_name}")
    line(f"Konsultasjon: {_moment(consultation.started_at or consultation.created_at)}")
    line(f"Signert av: {record.signer.display}, {_moment(signed_at)}")
    if record.nurse is not None:
        line(f"Sykepleier: {record.nurse.display}")
    pdf.ln(3)

    found = words.findings(assessment.content)
    if found:
        heading(words.FINDINGS)
        for text in found:
            line(text)
        pdf.ln(2)
    for section, text in words.plan(assessment.content):
        heading(section)
        line(text)
        pdf.ln(2)

    measured = [(i, p.snapshot.annotations.measurement()) for i, p in enumerate(record.photos)
                if p.snapshot.annotations is not None]
    rows = [(i, m) for i, m in measured if m is not None]
    if rows:
        heading(words.MEASUREMENTS)
        for index, m in rows:
            line(f"{words.PHOTO} {index + 1}: lengde {words.number(m.length_cm)} cm, "
                 f"bredde {words.number(m.width_cm)} cm, areal {words.number(m.area_cm2)} cm²")
        pdf.ln(2)

    for index, photo in enumerate(record.photos):
        view = photo.snapshot
        scale = min(_PHOTO_WIDTH_MM / view.width, _PHOTO_HEIGHT_MM / view.height)
        width, height = view.width * scale, view.height * scale
        # A photo, its caption (and the first one's heading) on one page.
        if pdf.get_y() + height + (18 if index == 0 else 8) > pdf.page_break_trigger:
            pdf.add_page()
        if index == 0:
            heading(words.PHOTOS)
        line(f"{words.PHOTO} {index + 1}, tatt {_moment(view.taken_at)}")
        pdf.image(io.BytesIO(photo.data), w=width, h=height)
        pdf.ln(3)
    return bytes(pdf.output())


def _moment(value: datetime) -> str:
    """In UTC, said so: the server keeps UTC, and no time zone database is assumed."""
    return value.strftime("%d.%m.%Y %H:%M") + " UTC"

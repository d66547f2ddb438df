"""The journal document of every signed assessment of a seeded pilot (the demo region, a
region filled with patients and photos, a patient with a D-number): a FHIR R4 document Bundle
that validates with the R4B models of ``fhir.resources`` (the package's R4-line models; R4B
changed none of the resources used here), named under the no-basis identifier systems, its
photos byte for byte the stored ones; the PDF note renders with poppler and carries the plan.
And the research export stays pseudonymous beside it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.pilot.test_fhir import MEASURED
from tests.records.test_rekey import fill, wound_jpeg
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import ConsultationKind, ConsultationStatus, StaffRole
from woundcare.demo import DEMO_REGION, seed_demo
from woundcare.journal.document import (
    DNR_SYSTEM,
    FNR_SYSTEM,
    HPR_SYSTEM,
    REGION_SYSTEM,
    build_document,
    ids_key,
    national_id_system,
    sha256_name,
)
from woundcare.journal.pdf import render_note
from woundcare.journal.record import Clinician, JournalRecord, Photo, gather
from woundcare.pilot.fhir import export_bundle
from woundcare.records.assessments import AssessmentContent, AssessmentView, NotSigned
from woundcare.records.consultations import ConsultationView
from woundcare.records.patients import PatientIdentity
from woundcare.records.snapshots import SnapshotView
from woundcare.refs import user_ref

r4b = pytest.importorskip("fhir.resources.R4B", reason="fhir.resources (test extra) not installed")
from fhir.resources.R4B.bundle import Bundle  # noqa: E402

PLAN = "Kompresjon med kortstrekk, skum på såret; skift annenhver dag. Bør unngå trykk på hælen (æøå ÆØÅ)."
CONTENT = AssessmentContent.from_json({
    "woundType": "venous_leg_ulcer",
    "location": "Venstre legg, medialt",
    "size": {"lengthCm": 4.2, "widthCm": 2.5},
    "tissue": {"granulation": 70, "slough": 30},
    "exudate": "moderate",
    "infectionSigns": ["erythema"],
    "treatmentPlan": PLAN,
    "nextReview": "2026-12-20",
    "responsible": "home_care",
    "outcome": "treated_at_home",
})
D_NUMBER = "41018010001"
EAST_HPR = "9144900"
"""Born 01.01.1980, with 4 added to the first digit: a D-number."""


def validate(bundle: dict[str, Any]) -> Bundle:
    """Strict R4B models of the Bundle and of every resource in it, and the document rules
    R4 states as invariants: an identifier and a timestamp (bdl-9, bdl-10), a Composition
    first (bdl-11), a fullUrl per entry, and every reference resolved inside the Bundle."""
    parsed = Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        r4b.get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    assert parsed.type == "document"
    assert bundle["identifier"]["system"] and bundle["identifier"]["value"] and bundle["timestamp"]
    assert bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    for reference in references(bundle):
        assert reference in urls, reference
    return parsed


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        if isinstance(value.get("url"), str) and value["url"].startswith("urn:uuid:"):
            found.append(value["url"])  # an Attachment's url: the Binary
        return found + [r for item in value.values() for r in references(item)]
    if isinstance(value, list):
        return [r for item in value for r in references(item)]
    return []


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def ids_of(bundle: dict[str, Any]) -> set[str]:
    """Every id the document gives: its own, its entries' urls and ids, its identifiers' values
    but the national id (which the research export must not carry either), the region's code
    and the HPR number (public registry numbers, the same in every document) and the photos'
    SHA-256 names (of the content, checked apart)."""
    found = {bundle["id"], bundle["identifier"]["value"]}
    for entry in bundle["entry"]:
        found |= {entry["fullUrl"], entry["fullUrl"].removeprefix("urn:uuid:"), entry["resource"]["id"]}
        for identifier in entry["resource"].get("identifier", []):
            if identifier["system"] not in (FNR_SYSTEM, DNR_SYSTEM, REGION_SYSTEM, HPR_SYSTEM, "urn:ietf:rfc:3986"):
                found.add(identifier["value"])
    return found


def render(pdf: bytes, tmp_path: Path) -> tuple[int, str]:
    """Pages that poppler's ``pdftoppm`` rendered, and ``pdftotext``'s text of the note."""
    missing = [tool for tool in ("pdftoppm", "pdftotext") if shutil.which(tool) is None]
    assert not missing, f"install Debian's poppler-utils (.ci/system-deps) for {missing}"
    note = tmp_path / "note.pdf"
    note.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(note), str(tmp_path / "page")], check=True,
                   capture_output=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert all(page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for page in pages)
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(note), "-"], check=True, capture_output=True).stdout
    for page in pages:
        page.unlink()
    return len(pages), text.decode()


async def seeded_pilot(server: RunningServer) -> list[str]:
    """The demo (its region, staff, patient and waiting consultation), a region of three
    patients with a photo each, and a patient known by D-number; every assessment signed."""
    app = server.app
    services = app[SERVICES]
    assert await seed_demo(services)
    east = await fill(server, "east", 3)
    east_specialist = await server.add_user("spes", "journal test password", {"east": StaffRole.SPECIALIST})
    assert await services.accounts.set_hpr_number(east_specialist, EAST_HPR)
    demo_specialist = await services.accounts.user_id("spesialist")
    assert demo_specialist is not None
    demo = await services.consultations.newest_open(DEMO_REGION)
    assert demo is not None

    d_patient = await services.patients.register(east.id, PatientIdentity(D_NUMBER, "Åse Ødegård"))
    found = await services.patients.find(d_patient.pseudonym)
    assert found is not None
    d_consultation = (await services.consultations.start(found, None)).id
    image = wound_jpeg(640, 480)
    for consultation in (demo, d_consultation):
        view = await services.consultations.get(consultation)
        assert view is not None
        await services.snapshots.store(consultation, view.region_id, view.patient_id, image, user_ref(1))
    # Two photos measured, one not (its annotation is a text label only).
    for snapshot_id in east.snapshots[:2]:
        row = await services.snapshots.get(snapshot_id)
        assert row is not None
        await services.snapshots.annotate(row, MEASURED)

    signed = []
    for consultation, specialist in [(demo, demo_specialist), *((c, east_specialist) for c in east.consultations),
                                     (d_consultation, east_specialist)]:
        view = await services.consultations.get(consultation)
        assert view is not None
        await services.assessments.save(consultation, view.region_id, CONTENT, user_ref(specialist))
        assert await services.assessments.sign(consultation, user_ref(specialist)) is not None
        signed.append(consultation)
    return signed


async def test_every_signed_assessment_of_the_seeded_pilot_exports(start_server: Any, tmp_path: Path) -> None:
    server = await start_server()
    services = server.app[SERVICES]
    signed = await seeded_pilot(server)
    key = ids_key(server.settings.signing_key())
    all_journal_ids: set[str] = set()
    hpr_seen = 0
    for consultation in signed:
        view = await services.consultations.get(consultation)
        assert view is not None
        record = await gather(services, view)
        bundle = build_document(record, key)
        validate(bundle)
        assert build_document(await gather(services, view), key) == bundle  # the same document again
        text = orjson.dumps(bundle).decode()

        [patient] = of_type(bundle, "Patient")
        identity = record.patient
        system = DNR_SYSTEM if identity.national_id == D_NUMBER else FNR_SYSTEM
        assert patient["identifier"] == [{"use": "official", "system": system, "value": identity.national_id}]
        assert patient["name"] == [{"text": identity.name}]
        assert patient["meta"]["profile"] == ["http://hl7.no/fhir/StructureDefinition/no-basis-Patient"]
        [encounter] = of_type(bundle, "Encounter")
        assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR",
                                      "display": "virtual"}
        [organization] = of_type(bundle, "Organization")
        assert organization["name"] == view.region_name
        [practitioner] = of_type(bundle, "Practitioner")  # the signer; these consultations had no staff starter
        assert practitioner["name"][0]["text"] == record.signer.name and record.signer.name
        if record.signer.hpr is None:  # the demo's specialist has no HPR number on record
            assert "identifier" not in practitioner
        else:
            assert practitioner["identifier"] == [{"system": HPR_SYSTEM, "value": EAST_HPR}]
            hpr_seen += 1
        [composition] = of_type(bundle, "Composition")
        assert composition["status"] == "final" and composition["attester"][0]["mode"] == "legal"
        assert composition["type"]["coding"][0] == {"system": "urn:oid:2.16.578.1.12.4.1.1.9602", "code": "B02-2",
                                                    "display": "Journalnotat"}
        sections = {s["title"]: s for s in composition["section"]}
        assert PLAN.replace("&", "&amp;") in sections["Behandlingsplan"]["text"]["div"]
        assert "20.12.2026" in sections["Neste kontroll"]["text"]["div"]
        assert "Hjemmesykepleien" in sections["Ansvarlig"]["text"]["div"]

        # The photos: as stored, byte for byte, under R4's SHA-1 and an RFC 6920 SHA-256 name.
        stored = [photo.data for photo in record.photos]
        assert len(stored) == len(await services.snapshots.of_consultation(consultation)) >= 1
        media, binaries = of_type(bundle, "Media"), of_type(bundle, "Binary")
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        assert len(media) == len(binaries) == len(stored)
        for item, data in zip(media, stored, strict=True):
            assert data[:3] == b"\xff\xd8\xff"
            binary = by_url[item["content"]["url"]]
            assert base64.b64decode(binary["data"]) == data and binary["contentType"] == "image/jpeg"
            assert item["content"]["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
            assert item["content"]["size"] == len(data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert item["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": f"ni:///sha-256;{digest}"}]
        observations = of_type(bundle, "Observation")
        observed = {(o["code"]["coding"][0]["code"], o["valueQuantity"]["code"]) for o in observations}
        assert {("length", "cm"), ("width", "cm")} <= observed  # the size the specialist assessed
        if consultation in signed[1:3]:
            assert ("area", "cm2") in observed  # drawn on the photo
            area = next(o for o in observations if o["code"]["coding"][0]["code"] == "area")
            assert area["valueQuantity"] == {"value": 2.0, "unit": "cm2", "system": "http://unitsofmeasure.org",
                                             "code": "cm2"}
            assert by_url[area["derivedFrom"][0]["reference"]]["resourceType"] == "Media"

        # No research id in the journal document; none of its ids, and no identity, in the
        # research export of the same consultation.
        snapshot_ids = [s.id for s in await services.snapshots.of_consultation(consultation)]
        for research_id in (view.patient, view.id, *snapshot_ids):
            assert research_id not in text
        journal_ids = ids_of(bundle)
        assert journal_ids.isdisjoint(all_journal_ids)  # every document's ids are its own
        all_journal_ids |= journal_ids
        research = await export_bundle(services, consultation)
        assert research is not None
        research_text = json.dumps(research, ensure_ascii=False)
        assert identity.national_id not in research_text and identity.name not in research_text
        assert record.signer.name not in research_text
        assert "2.16.578.1.12.4.1.4" not in research_text and EAST_HPR not in research_text
        assert [i for i in journal_ids if i in research_text] == []
        assert [data for data in stored if sha256_name(data) in research_text] == []

        pages, note = render(await asyncio.to_thread(render_note, record), tmp_path)
        assert pages >= 1
        flat = " ".join(note.split())
        assert PLAN in flat and identity.name in flat and identity.national_id in flat
        assert "Hjemmesykepleien (kommunen)" in flat and "20.12.2026" in flat
    assert hpr_seen == len(signed) - 1  # all but the demo consultation were signed by the east specialist


async def test_a_draft_is_not_exported(start_server: Any) -> None:
    server = await start_server()
    services = server.app[SERVICES]
    east = await fill(server, "east", 1)  # an unsigned assessment
    view = await services.consultations.get(east.consultations[0])
    assert view is not None
    with pytest.raises(NotSigned):
        await gather(services, view)


def made(national_id: str, hpr: str | None, photos: tuple[Photo, ...] = ()) -> JournalRecord:
    now = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
    view = ConsultationView("c-1", 1, "nord", "Region Nord", "pseudo-1", 1, ConsultationStatus.ENDED, now, now, now,
                            ConsultationKind.ECONSULT)
    signer = Clinician("u7", "Sigrid Sårlege", StaffRole.SPECIALIST, hpr)
    nurse = Clinician("u8", "", StaffRole.NURSE)
    assessment = AssessmentView(CONTENT, "u7", now, now, "u7", 2)
    return JournalRecord(view, PatientIdentity(national_id, "Ola Nordmann"), assessment, signer, nurse, photos)


def test_the_hpr_number_and_the_d_number_under_their_systems() -> None:
    assert national_id_system("01018012371") == FNR_SYSTEM
    assert national_id_system(D_NUMBER) == DNR_SYSTEM
    assert national_id_system("01818012345") == FNR_SYSTEM  # a synthetic test number (month + 80)
    bundle = build_document(made(D_NUMBER, "9144900"), b"k" * 32)
    validate(bundle)
    signer, nurse = of_type(bundle, "Practitioner")
    assert signer["identifier"] == [{"system": HPR_SYSTEM, "value": "9144900"}]
    assert "name" not in nurse and nurse["qualification"][0]["code"]["text"] == "Sykepleier"
    [encounter] = of_type(bundle, "Encounter")
    assert [p["individual"]["display"] for p in encounter["participant"]] == ["Sigrid Sårlege", "Sykepleier"]
    assert of_type(bundle, "Patient")[0]["identifier"][0]["system"] == DNR_SYSTEM
    assert of_type(bundle, "Composition")[0]["title"] == "Sårvurdering (e-konsultasjon)"
    # Another key, other ids: they are keyed, not derived from the consultation id alone.
    assert ids_of(build_document(made(D_NUMBER, None), b"j" * 32)).isdisjoint(ids_of(bundle))


def test_the_note_embeds_the_photo_unchanged(tmp_path: Path) -> None:
    image = wound_jpeg(400, 300)
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    photo = Photo(SnapshotView("s1", "c-1", now, "u8", None, "image/jpeg", 400, 300, MEASURED), image)
    record = made("01018012371", None, (photo, photo))
    pdf = render_note(record)
    assert image in pdf  # the JPEG's bytes as stored (DCTDecode), not re-encoded
    assert b"/GTS_PDFA1" in pdf and b"pdfaid:part" in pdf  # the PDF/A output intent and XMP claim
    # No external references: no links, launches or remote go-tos (XMP's namespace URIs name no resource).
    assert not [k for k in (b"/URI", b"/Annots", b"/Launch", b"/GoToR", b"/JavaScript") if k in pdf]
    pages, text = render(pdf, tmp_path)
    assert pages >= 1
    flat = " ".join(text.split())
    measured = MEASURED.measurement()
    assert measured is not None
    length, width = (f"{v:g}".replace(".", ",") for v in (measured.length_cm, measured.width_cm))
    assert PLAN in flat and f"Bilde 2: lengde {length} cm, bredde {width} cm, areal 2 cm²" in flat
    assert "Behandlet hjemme" in flat and "Ola Nordmann" in flat and "01018012371" in flat

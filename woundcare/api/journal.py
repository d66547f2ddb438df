"""A signed assessment for the patient's journal (see ``woundcare.journal``):
``GET /api/consultations/{id}/journal-document`` (a FHIR R4 document Bundle) and
``GET /api/consultations/{id}/journal-note.pdf`` (the same as a PDF note).

Identified, so the region's clinicians only (``journal.export``); each export is audited by
the guard, naming the consultation. A draft is refused: ``409 not_signed``.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..journal.document import build_document, ids_key
from ..journal.record import JournalRecord, gather
from .guard import requires
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()

_PRIVATE = {"Cache-Control": "no-store"}


async def _record(request: web.Request) -> JournalRecord:
    view = await load_visible(request, CONSULTATION, Action.JOURNAL_EXPORT)
    # NotSigned, NoIdentity and a shredded key rise to the guard, which answers and audits them.
    return await gather(services(request), view)


@routes.get("/api/consultations/{id}/journal-document")
@requires(Action.JOURNAL_EXPORT)
async def journal_document(request: web.Request) -> web.Response:
    record = await _record(request)
    key = ids_key(services(request).settings.signing_key())
    body = await asyncio.to_thread(lambda: orjson.dumps(build_document(record, key)))
    return web.Response(body=body, content_type="application/fhir+json", headers=_PRIVATE)


@routes.get("/api/consultations/{id}/journal-note.pdf")
@requires(Action.JOURNAL_EXPORT)
async def journal_note(request: web.Request) -> web.Response:
    record = await _record(request)
    body = await asyncio.to_thread(_render_note, record)
    # A fixed file name: the patient's name stays out of download folders' listings.
    return web.Response(body=body, content_type="application/pdf", headers={
        **_PRIVATE, "Content-Disposition": 'attachment; filename="journalnotat.pdf"'})


def _render_note(record: JournalRecord) -> bytes:
    # fpdf2 and the fontTools it loads are some 17 MB resident and 220 modules that a server
    # which never exports a note need not hold: they load at the first note, in its worker thread.
    from ..journal.pdf import render_note

    return render_note(record)

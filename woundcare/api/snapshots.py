"""Snapshots: upload (multipart or a raw JPEG body, read with a cap), list, image and thumbnail,
annotations with the wound measurement; and a patient's wound timeline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from signaling.handler import ROOMS

from ..appkeys import services
from ..auth.policy import Action
from ..audit.log import AuditEntry
from ..records.images import ImageRejected, MediaType, RejectCode
from ..records.imagework import ImageBusy
from ..records.measurement import Annotations
from .body import json_body
from .errors import api_error, http_error
from .guard import audit_entry, audited, requires, subject
from .visible import CONSULTATION, PATIENT, SNAPSHOT, UPLOAD_TARGET, load_visible

routes = web.RouteTableDef()

_MAX_REQUEST_ID = 64


async def _gathered(chunks: AsyncIterator[bytes], limit: int) -> list[bytes] | None:
    """``chunks`` as they arrived, kept, not copied; None as soon as there are more than
    ``limit`` bytes.

    The pieces are joined in the image thread (:func:`~woundcare.records.images.clean_image`):
    copied here into one buffer, the copy and the page faults of a fresh 5 MB buffer had cost
    the event loop's thread some 3 ms per photo. Only what arrived is held, whatever the
    request declared (issue 20)."""
    pieces: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        pieces.append(chunk)
    return pieces


_BATCH = 1024 * 1024
"""A large body's bytes are taken from the socket once this many are waiting (or the rest of
the body is): each wake-up of the event loop for a large body (a read, the HTTP parser, the
handler's task) had come every 60-80 KB, some 80 per photo."""


class _BatchedReads:
    """Fewer, larger reads of one large body: the socket's receive low-water mark
    (``SO_RCVLOWAT``; Linux grows the receive buffer to match) set to :data:`_BATCH` and
    lowered to what is left of the body as it nears its end, so that the end still wakes the
    loop; the request's buffer allowed to hold a batch before aiohttp pauses reading (its
    high-water mark is twice the chunk size set), and no more: one wake-up takes about one
    batch off the socket, so a ``/ws`` frame waits for one batch's parse at most, not for
    megabytes that piled up meanwhile. Back to one byte when the body is read or abandoned:
    the connection's next request must wake the loop at once.

    The mark counts bytes still to come (the declared length less what aiohttp has taken),
    never more, so no read waits for bytes that will not come. Only for a declared length
    past :data:`_BATCH` on a socket that takes the option; otherwise nothing changes."""

    def __init__(self, request: web.Request) -> None:
        self._content = request.content
        self._length = request.content_length or 0
        transport = request.transport
        found = transport.get_extra_info("socket") if transport is not None and self._length > _BATCH else None
        self._socket: socket.socket | None = found
        self._mark = 1
        if found is not None:
            self._content.set_read_chunk_size(_BATCH // 2)
            self.arrived()

    def arrived(self) -> None:
        """After each piece: the mark for what is still to come."""
        if self._socket is not None:
            self._set(max(1, min(_BATCH, self._length - self._content.total_bytes)))

    def close(self) -> None:
        if self._socket is not None:
            self._set(1)
            self._socket = None

    def _set(self, mark: int) -> None:
        if mark != self._mark and self._socket is not None:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
            except OSError:
                # Gone or not a TCP socket: reads stay as they are, one wake-up per arrival.
                self._socket = None
            self._mark = mark


async def _read_capped(
    part: BodyPartReader, limit: int, batched: _BatchedReads | None = None
) -> list[bytes] | None:
    """The part's raw bytes as they arrived; None as soon as there are more than ``limit``."""

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(256 * 1024):
            if batched is not None:
                batched.arrived()
            yield chunk

    return await _gathered(chunks(), limit)


async def _read_raw(request: web.Request, limit: int, batched: _BatchedReads) -> list[bytes]:
    """A raw ``image/jpeg`` body: refused before reading if its Content-Length is over
    ``limit``, and as soon as it grows past it (chunked)."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large()

    async def chunks() -> AsyncIterator[bytes]:
        # One piece as it arrived at a time (``readany`` would join what is waiting).
        async for chunk, _ in request.content.iter_chunks():
            batched.arrived()
            yield chunk

    pieces = await _gathered(chunks(), limit)
    if pieces is None:
        raise _too_large()
    if length is not None and sum(map(len, pieces)) != length:
        raise asyncio.IncompleteReadError(b"", length)
    return pieces


def _too_large() -> web.HTTPException:
    return api_error(413, RejectCode.TOO_LARGE.value, "the image is too large")


def _request_id(raw: list[bytes] | str | None) -> str:
    value = raw if isinstance(raw, str) else b"".join(raw or ()).decode(errors="replace")
    if not value or not value.replace("-", "").replace("_", "").isalnum() or not value.isascii():
        raise api_error(400, "bad_request", "'request' must be a snapshot request id")
    return value


async def _read_parts(request: web.Request, limit: int, batched: _BatchedReads) -> tuple[list[bytes], str | None]:
    reader = await request.multipart()
    image: list[bytes] | None = None
    request_id: str | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise api_error(400, "bad_request", "nested multipart is not accepted")
        if part.name == "image":
            if image is not None:
                raise api_error(400, "bad_request", "one image per upload")
            image = await _read_capped(part, limit, batched)
            if image is None:
                raise _too_large()
        elif part.name == "request" and request_id is None:
            request_id = _request_id(await _read_capped(part, _MAX_REQUEST_ID))
        else:
            # Nothing else is read: an unknown or repeated field could be any size.
            raise api_error(400, "bad_request", "the multipart fields are 'image' and optionally 'request'")
    if image is None:
        raise api_error(400, "bad_request", "the multipart field 'image' is required")
    return image, request_id


async def _read_upload(
    request: web.Request, limit: int, seconds: float
) -> tuple[list[bytes], str | None]:
    """The image (at most ``limit`` bytes) and the optional snapshot request id, within
    ``seconds`` for the whole body so that a trickling client cannot hold the handler.

    Either multipart/form-data (field ``image``, optional field ``request``) or a raw
    ``image/jpeg`` body with the request id as the query parameter ``request`` (what a camera
    sends: no multipart framing to parse)."""
    raw = request.content_type == MediaType.JPEG.value
    if not raw and not request.content_type.startswith("multipart/"):
        raise api_error(
            415, "multipart_required", "send the image as multipart/form-data field 'image' or as image/jpeg"
        )
    batched = _BatchedReads(request)
    try:
        async with asyncio.timeout(seconds):
            if raw:
                given = request.query.get("request")
                request_id = None if given is None else _request_id(given)
                return await _read_raw(request, limit, batched), request_id
            return await _read_parts(request, limit, batched)
    except TimeoutError:
        raise api_error(408, "request_timeout", "the upload did not arrive in time") from None
    except (ValueError, BadHttpMessage):
        # aiohttp's multipart reader: no or wrong boundary, truncated body, bad part headers.
        raise api_error(400, "bad_request", "the multipart body is malformed") from None
    except (ConnectionError, asyncio.IncompleteReadError):
        # The client went away mid-body; if it still listens, it learns why.
        raise api_error(400, "bad_request", "the upload ended early") from None
    finally:
        batched.close()


@routes.post("/api/consultations/{id}/snapshots")
@requires(Action.SNAPSHOT_UPLOAD)
async def upload_snapshot(request: web.Request) -> web.Response:
    view = await load_visible(request, UPLOAD_TARGET, Action.SNAPSHOT_UPLOAD)
    if not view.consented:
        raise api_error(409, "no_consent", "the patient has not consented to snapshots being stored")
    settings = services(request).settings
    data, request_id = await _read_upload(request, settings.snapshot_max_bytes, settings.upload_timeout_seconds)

    def audit(resource: str) -> AuditEntry:
        return audit_entry(request, Action.SNAPSHOT_UPLOAD, resource, view.region_id)

    try:
        stored = await services(request).snapshots.store(
            view.id, view.region_id, view.patient_id, data, subject(request).ref, request_id, audit=audit
        )
    except (ImageRejected, ImageBusy) as exc:
        raise http_error(exc) from None
    audited(request, f"snapshot:{stored.id}", view.region_id)
    request.config_dict[ROOMS].publish(view.id, {"type": "snapshot_stored", "id": stored.id, "request": request_id})
    return web.json_response(stored.json(), status=201)


@routes.get("/api/consultations/{id}/snapshots")
@requires(Action.SNAPSHOT_READ)
async def list_snapshots(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.SNAPSHOT_READ)
    views = await services(request).snapshots.of_consultation(view.id)
    return web.json_response({"snapshots": [v.json() for v in views]})


async def _image(request: web.Request, thumbnail: bool) -> web.Response:
    row = await load_visible(request, SNAPSHOT, Action.SNAPSHOT_READ)
    body = await services(request).snapshots.image(row, thumbnail)
    return web.Response(
        body=body,
        content_type="image/jpeg" if thumbnail else row.media_type,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@routes.get("/api/snapshots/{id}")
@requires(Action.SNAPSHOT_READ)
async def snapshot_image(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=False)


@routes.get("/api/snapshots/{id}/thumbnail")
@requires(Action.SNAPSHOT_READ)
async def snapshot_thumbnail(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=True)


@routes.put("/api/snapshots/{id}/annotations")
@requires(Action.SNAPSHOT_ANNOTATE)
async def annotate_snapshot(request: web.Request) -> web.Response:
    row = await load_visible(request, SNAPSHOT, Action.SNAPSHOT_ANNOTATE)
    try:
        annotations = Annotations.from_json(await json_body(request))
        if annotations.outline is not None and annotations.reference is not None:
            annotations.measurement()
    except ValueError as exc:
        raise api_error(400, "bad_annotations", str(exc)) from None
    view = await services(request).snapshots.annotate(row, annotations)
    return web.json_response(view.json())


@routes.get("/api/patients/{id}/timeline")
@requires(Action.TIMELINE_READ)
async def timeline(request: web.Request) -> web.Response:
    """Everything about a patient's wound in time order, to see whether it heals."""
    patient = await load_visible(request, PATIENT, Action.TIMELINE_READ)
    consultations = await services(request).consultations.of_patient(patient.id)
    snapshots = await services(request).snapshots.of_patient(patient.id)
    entries: list[dict[str, object]] = []
    for consultation in consultations:
        assessment = await services(request).assessments.get(consultation.id)
        entries.append(
            {
                "kind": "consultation",
                "at": consultation.created_at.isoformat(),
                **consultation.json(),
                "assessment": assessment.json() if assessment else None,
            }
        )
    entries.extend({"kind": "snapshot", "at": s.taken_at.isoformat(), **s.json()} for s in snapshots)
    entries.sort(key=lambda e: str(e["at"]))
    return web.json_response({"patient": patient.pseudonym, "entries": entries})

